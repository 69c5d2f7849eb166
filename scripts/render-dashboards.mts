// Rewrites dashboards/homelab.json from components/monitoring/dashboards.ts (npm run dashboards).
import { writeFileSync } from "node:fs";
import path from "node:path";
import { renderDashboard } from "../components/monitoring/dashboards.ts";

const out = path.resolve(import.meta.dirname, "../dashboards/homelab.json");
writeFileSync(out, renderDashboard());
console.log(`wrote ${path.relative(process.cwd(), out)}`);
