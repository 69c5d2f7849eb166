// The node-control contract (drills/lib/nodes.ts picks the implementation): its own module so the
// implementations (docker in nodes.ts, VMs in machine-control.ts) and scratch-node.ts import it without a cycle.
import type { RunResult } from "../../components/platform/docker-node.ts";
import type { TopologyNode } from "../../components/topology.ts";

/** What node control needs of a topology node. */
export type ControlledNode = Pick<TopologyNode, "name" | "handle" | "dataVolumes">;

export type ExecResult = RunResult;

export interface ExecOptions {
  /** User inside the node (default: the image's). */
  user?: string;
  /** Bytes for the command's stdin (never logged: may carry secrets). */
  input?: string | Buffer;
  /** Resolve with a non-zero exit code instead of rejecting. */
  allowFailure?: boolean;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface RecreateOptions {
  /** Environment over the stack's (e.g. HOMELAB_ROLE=restore); none: exactly as the stack made the node. */
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

export interface NodeControl {
  readonly platform: string;
  /** Hard crash: SIGKILL (container kill / VM destroy); resolves once the node is down. */
  kill(node: ControlledNode, signal?: string): Promise<void>;
  /** Orderly stop: SIGTERM, then SIGKILL after `timeoutS`. */
  stop(node: ControlledNode, timeoutS: number): Promise<void>;
  start(node: ControlledNode): Promise<void>;
  exec(node: ControlledNode, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  isRunning(node: ControlledNode): Promise<boolean>;
  /**
   * "Loses the disk": removes the node's data volumes. The node must be down (kill or stop it first: the
   * fault is the drill's to inject); on docker its stopped container goes too, since a volume a container
   * references cannot be removed. The node must then be re-created. Returns the volumes removed.
   */
  removeDataVolumes(node: ControlledNode): Promise<string[]>;
  /** Resolves when the node reports healthy (or is running, when it has no health check). */
  waitHealthy(node: ControlledNode, timeoutMs: number): Promise<void>;
  /**
   * The node's service made again on the SAME data, with `env` over the stack's, then healthy: another
   * HOMELAB_ROLE for pg_rewind, or (no env) back to exactly what the stack made. A killed node comes back
   * only this way, never by itself (it could come up as a second primary).
   */
  recreate(node: ControlledNode & Pick<TopologyNode, "container">, opts?: RecreateOptions): Promise<void>;
}

