// Sessions as the stack's app user on a node's published PostgreSQL port: what an application holds, so a
// drill's fault is one an application could cause (a forgotten transaction, an old snapshot). Each gets an
// application_name under one prefix, so the drill's cleanup can end them all by name.
import pg from "pg";
import type { Topology, TopologyNode } from "../../components/topology.ts";
import { readSecret, type NodeControl } from "./nodes.ts";

export interface AppSessions {
  /** A new connected session named `${prefix}-${name}`. */
  open(name: string): Promise<pg.Client>;
  /** Ends every session opened here (errors ignored). */
  closeAll(): Promise<void>;
  /** The application_name pattern (LIKE) of these sessions. */
  readonly pattern: string;
}

export async function appSessions(t: Topology, ctl: NodeControl, node: TopologyNode, prefix: string): Promise<AppSessions> {
  if (!node.published) throw new Error(`${node.name} publishes no port: the drill reaches PostgreSQL at its published address`);
  const passwordFile = t.postgres.passwordFiles[t.postgres.appUser];
  if (!passwordFile) throw new Error(`the topology names no password file for ${t.postgres.appUser}`);
  const password = await readSecret(ctl, node, passwordFile);
  const { host, port } = node.published;
  const clients: pg.Client[] = [];
  return {
    pattern: `${prefix}-%`,
    async open(name) {
      const c = new pg.Client({ host, port, user: t.postgres.appUser, password, database: t.postgres.database, application_name: `${prefix}-${name}`, connectionTimeoutMillis: 10_000 });
      c.on("error", () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async closeAll() {
      for (const c of clients.splice(0)) await c.end().catch(() => undefined);
    },
  };
}
