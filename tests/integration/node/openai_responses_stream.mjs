// The openai Node SDK: responses.stream(...) then finalResponse(), as an app
// streaming a reasoning model's answer would.
import { baseURL, report, require } from "./sdks.mjs";

const { OpenAI } = require("openai");
const client = new OpenAI({ baseURL: baseURL(), apiKey: "client-key", maxRetries: 0, timeout: 30000 });

const stream = client.responses.stream({
  model: "fake-model",
  input: "Why is the sky blue?",
  reasoning: { effort: "medium", summary: "auto" },
});
const events = [];
let deltas = "";
let summaryDeltas = "";
let reasoningDeltas = "";
for await (const event of stream) {
  events.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.reasoning_summary_text.delta") summaryDeltas += event.delta;
  if (event.type === "response.reasoning_text.delta") reasoningDeltas += event.delta;
}
const final = await stream.finalResponse();
const reasoning = final.output.filter((item) => item.type === "reasoning");
report({
  id: final.id,
  status: final.status,
  output_text: final.output_text,
  output_types: final.output.map((item) => item.type),
  reasoning_summary: reasoning.flatMap((r) => (r.summary || []).map((s) => s.text)).join(""),
  reasoning_content: reasoning.flatMap((r) => (r.content || []).map((c) => c.text)).join(""),
  deltas,
  summary_deltas: summaryDeltas,
  reasoning_deltas: reasoningDeltas,
  events,
  usage: final.usage,
});
