import { defineConfig } from "vitest/config";

// `npm run test:vm`: the real VM smoke boot (test/vm), kept out of the default `npm test` (vitest.config.ts
// excludes test/vm). No Docker global setup; the test itself sets up libvirt (ensureVmHost, cli/setup.ts).
export default defineConfig({
  test: {
    include: ["test/vm/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    reporters: ["default"],
  },
});
