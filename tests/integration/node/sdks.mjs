// The SDKs installed by scripts/install-node-sdks, loaded from the directory
// it printed (passed in NODE_SDKS): these scripts live in the repo, the
// packages in .tools/, so a bare `import "openai"` would not find them.
import { createRequire } from "node:module";
import path from "node:path";

const dir = process.env.NODE_SDKS;
if (!dir) {
  throw new Error("NODE_SDKS must name the directory scripts/install-node-sdks printed");
}
export const require = createRequire(path.join(dir, "package.json"));

export function baseURL() {
  const base = process.argv[2];
  if (!base) throw new Error("usage: node <script>.mjs <baseURL>");
  return base;
}

// The one line the test reads: a JSON object on stdout.
export function report(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

// A fetch that keeps each request's JSON body (and the answer's status), so
// the script can report what the SDK itself sent.
export function recordingFetch(sent) {
  return async (url, init) => {
    const body = init?.body ? JSON.parse(init.body) : null;
    const response = await fetch(url, init);
    sent.push({ url: String(url), status: response.status, body });
    return response;
  };
}
