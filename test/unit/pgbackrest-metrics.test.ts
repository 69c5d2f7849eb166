// homelab-pgbackrest-metrics (components/postgres/image/bin): pgbackrest info JSON -> textfile metrics, run
// with the host's perl on a sample of pgBackRest 2.55's `info --output=json` (the e2e proves the real one).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const SCRIPT = path.resolve(import.meta.dirname, "../../components/postgres/image/bin/homelab-pgbackrest-metrics");
const run = (input: string) => spawnSync("perl", [SCRIPT, "--stdin"], { input, encoding: "utf8" });

const info = [{
  name: "main",
  status: { code: 0, message: "ok" },
  repo: [{ key: 1, status: { code: 0, message: "ok" } }],
  archive: [{ database: { id: 1, "repo-key": 1 }, id: "17-1", max: "000000010000000000000007", min: "000000010000000000000001" }],
  backup: [
    { label: "20261202-100000F", type: "full", timestamp: { start: 1764669600, stop: 1764669610 }, info: { size: 31000000, repository: { delta: 4000000 } }, database: { "repo-key": 1 } },
    { label: "20261202-100000F_20261202-110000D", type: "diff", timestamp: { start: 1764673200, stop: 1764673203 }, info: { size: 31000000, repository: { delta: 10000 } }, database: { "repo-key": 1 } },
  ],
}];

describe("homelab-pgbackrest-metrics", () => {
  it("writes the newest backup per type and overall, the archive's newest WAL and the status codes", () => {
    const r = run(JSON.stringify(info));
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("homelab_pgbackrest_info_success 1");
    expect(lines).toContain('homelab_pgbackrest_stanza_status_code{stanza="main"} 0');
    expect(lines).toContain('homelab_pgbackrest_backup_count{stanza="main"} 2');
    expect(lines).toContain('homelab_pgbackrest_backup_newest_stop_timestamp_seconds{stanza="main",type="any"} 1764673203');
    expect(lines).toContain('homelab_pgbackrest_backup_newest_stop_timestamp_seconds{stanza="main",type="full"} 1764669610');
    expect(lines).toContain('homelab_pgbackrest_backup_newest_duration_seconds{stanza="main",type="full"} 10');
    expect(lines).toContain('homelab_pgbackrest_archive_max_wal_info{repo="1",stanza="main",wal="000000010000000000000007"} 1');
    expect(lines).toContain(`homelab_pgbackrest_archive_max_wal_number{repo="1",stanza="main"} ${2 ** 32 + 7}`);
    expect(r.stdout.match(/^# TYPE homelab_pgbackrest_backup_newest_stop_timestamp_seconds gauge$/gm)).toHaveLength(1);
  });

  it("says info failed (success 0) on output it cannot read, and no backup metrics", () => {
    const r = run("not json");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("homelab_pgbackrest_info_success 0");
    expect(r.stdout).not.toContain("backup_count");
  });
});
