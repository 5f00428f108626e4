// The Vercel AI SDK: a two-turn chat, the second turn replaying the first's
// response.messages, as its docs show (argv[3]: the model id, fake-model by
// default); the openai provider on its defaults
// (the Responses API, store: true: the replayed assistant message goes as an
// item_reference to the stored first response).
import { baseURL, recordingFetch, report, require } from "./sdks.mjs";

const { generateText } = require("ai");
const { createOpenAI } = require("@ai-sdk/openai");

const sent = [];
const openai = createOpenAI({ baseURL: baseURL(), apiKey: "client-key", fetch: recordingFetch(sent) });
const model = openai(process.argv[3] ?? "fake-model");
const messages = [{ role: "user", content: "My name is Ada. Say hello." }];
const first = await generateText({ model, messages, maxRetries: 0 });
messages.push(...first.response.messages);
messages.push({ role: "user", content: "What is my name?" });
const second = await generateText({ model, messages, maxRetries: 0 });
report({
  sent,
  turns: [first, second].map((r) => ({
    text: r.text,
    reasoning: r.reasoningText ?? null,
    finish_reason: r.finishReason,
    response_id: r.response.id,
    messages: r.response.messages,
    // The Responses API's own output items, as the gateway sent them.
    output: r.response.body?.output ?? null,
  })),
});
