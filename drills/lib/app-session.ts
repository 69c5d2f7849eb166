// Sessions as the stack's app user on a node's published PostgreSQL port: what an application holds, so a
// drill's fault is one an application could cause (a forgotten transaction, an old snapshot). Each gets an
// application_name under one prefix, so the drill's cleanup can end them all by name, stuck ones included.
import pg from "pg";
import type { Topology, TopologyNode } from "../../components/topology.ts";
import { psqlOnNode, readSecret, type NodeControl } from "./nodes.ts";
import { pgClientConfig } from "./topology.ts";

export interface AppSessions {
  /** A new connected session named `${prefix}-${name}`. */
  open(name: string): Promise<pg.Client>;
  /** Terminates every session of the prefix on the server (a blocked one would never answer a client's
   *  end), then closes the clients opened here. */
  endAll(): Promise<void>;
}

export async function appSessions(t: Topology, ctl: NodeControl, node: TopologyNode, prefix: string): Promise<AppSessions> {
  const passwordFile = t.postgres.passwordFiles[t.postgres.appUser];
  if (!passwordFile) throw new Error(`the topology names no password file for ${t.postgres.appUser}`);
  const config = pgClientConfig(t, node, { user: t.postgres.appUser, password: await readSecret(ctl, node, passwordFile) });
  const clients: pg.Client[] = [];
  return {
    async open(name) {
      const c = new pg.Client({ ...config, application_name: `${prefix}-${name}`, connectionTimeoutMillis: 10_000 });
      c.on("error", () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async endAll() {
      await psqlOnNode(ctl, node, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE '${prefix}-%' AND pid <> pg_backend_pid()`);
      for (const c of clients.splice(0)) await c.end().catch(() => undefined);
    },
  };
}
