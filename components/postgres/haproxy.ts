// HAProxy config of the stable endpoint in `postgres.ha: patroni` (ADR 0017). Pure. Two TCP listeners: the
// primary port routes to the one node whose Patroni REST API answers 200 on /primary (OPTIONS: no body, so
// HAProxy closing the check connection early leaves no traceback in Patroni's log), the replicas port to
// every node answering 200 on /replica (Patroni docs "REST API: health check endpoints"; the HAProxy
// template in Patroni's repository, haproxy.cfg, is the pattern).
export interface HaproxyInput {
  primaryPort: number;
  replicasPort: number;
  /** The PostgreSQL nodes: name, address inside the stack network, PostgreSQL and Patroni REST ports. */
  nodes: { name: string; address: string; port: number; restPort: number }[];
  /** Seconds between health checks (inter); a node is marked down after 2 failures, up after 1 success. */
  checkIntervalSeconds: number;
}

export function renderHaproxyConf(input: HaproxyInput): string {
  const inter = `${Math.round(input.checkIntervalSeconds * 1000)}ms`;
  const servers = input.nodes.map((n) => `    server ${n.name} ${n.address}:${n.port} maxconn 200 check port ${n.restPort}`);
  const listen = (name: string, port: number, path: string) => [
    `listen ${name}`,
    `    bind *:${port}`,
    `    option httpchk OPTIONS ${path}`,
    "    http-check expect status 200",
    // on-marked-down shutdown-sessions: clients of a demoted primary are cut at once, not left writing
    // into a node that refuses writes (or, partitioned, to a node that no longer holds the leader lock).
    `    default-server inter ${inter} fastinter ${inter} downinter ${inter} fall 2 rise 1 on-marked-down shutdown-sessions`,
    ...servers,
    "",
  ];
  return [
    "# HAProxy of the stable PostgreSQL endpoint, rendered by homelab-data (components/postgres/haproxy.ts)",
    "global",
    "    maxconn 1000",
    "",
    "defaults",
    "    mode tcp",
    "    log stdout format raw local0",
    "    timeout connect 3s",
    "    timeout client 30m",
    "    timeout server 30m",
    "    timeout check 2s",
    "",
    "frontend stats",
    "    mode http",
    "    bind 127.0.0.1:8404",
    "    stats enable",
    "    stats uri /stats",
    "",
    ...listen("primary", input.primaryPort, "/primary"),
    ...listen("replicas", input.replicasPort, "/replica"),
  ].join("\n");
}
