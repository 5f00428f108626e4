// The Vercel AI SDK: generateText with a tool and several steps, the openai
// provider on its defaults (the Responses API, store: true). argv[3]: the
// model id, fake-model by default.
import { baseURL, recordingFetch, report, require } from "./sdks.mjs";

const { generateText, tool, stepCountIs } = require("ai");
const { createOpenAI } = require("@ai-sdk/openai");
const { z } = require("zod");

const sent = [];
const openai = createOpenAI({ baseURL: baseURL(), apiKey: "client-key", fetch: recordingFetch(sent) });
const calls = [];
const result = await generateText({
  model: openai(process.argv[3] ?? "fake-model"),
  maxRetries: 0,
  prompt: "What is the weather in Paris?",
  tools: {
    weather: tool({
      description: "The current weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        calls.push(city);
        return { city, temperature: 21, sky: "clear" };
      },
    }),
  },
  stopWhen: stepCountIs(5),
});
report({
  sent,
  text: result.text,
  finish_reason: result.finishReason,
  executed: calls,
  steps: result.steps.map((step) => ({
    finish_reason: step.finishReason,
    text: step.text,
    tool_calls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    tool_results: step.toolResults.map((r) => ({ id: r.toolCallId, name: r.toolName, output: r.output })),
    response_id: step.response.id,
    // The Responses API's own output items, as the gateway sent them.
    output: step.response.body?.output ?? null,
  })),
  usage: result.totalUsage,
});
