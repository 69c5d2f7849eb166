import { defineConfig } from "vitest/config";

// One runner for every layer of the pyramid (docs/architecture.md "Testing pyramid").
// e2e and engine files talk to a real Docker engine / pulumi CLI and run one file at a time:
// two cores cannot host two PostgreSQL clusters bringing themselves up at once.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/vm boots a real VM under libvirt: its own script, `npm run test:vm` (vitest.vm.config.ts).
    exclude: ["test/vm/**", "**/node_modules/**"],
    // Engine, images and the Pulumi toolchain, by the same code as `homelab up` (cli/setup.ts).
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    reporters: ["default"],
  },
});
