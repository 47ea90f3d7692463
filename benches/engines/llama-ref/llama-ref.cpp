// llama-ref: llama.cpp's own speed on a GGUF, the reference for the
// in-process engines. Built by run-bench.sh against the very llama.cpp
// that llama-cpp-sys-2 compiled for hearthnet-gen (same sources, same
// flags, same static libraries), driven as llama.cpp's llama-bench drives
// it: the whole prompt in one llama_decode (llama.cpp's default batch of
// 512), then one token per call, greedy (argmax of the logits).
//
// usage: llama-ref MODEL.gguf THREADS [REPS] [PROMPT_TOKENS] [GEN_TOKENS]
// prints per rep and a RESULT line: ttft_ms (context made, prompt read,
// first token picked), decode (tok/s after the first token), pp (prompt
// tok/s of the llama_decode call alone)
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static const char * PROMPT =
    "HearthNet is a local-first network of small computers that live in homes, "
    "schools and libraries. Each node keeps its own data, talks to its neighbours over the local "
    "network, and only reaches the wider internet when its owner allows it. The assistant running on "
    "a node should answer questions about documents stored on that node, summarise long texts, and "
    "explain technical topics in plain language. Write a detailed explanation of how such a network "
    "could share a language model between nodes while keeping every household's data private, and "
    "list the trade-offs in latency, energy use and reliability. ";

using clk = std::chrono::steady_clock;
static double ms(clk::time_point a, clk::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

static llama_token argmax(llama_context * ctx, int i, int n_vocab) {
    const float * logits = llama_get_logits_ith(ctx, i);
    return (llama_token) (std::max_element(logits, logits + n_vocab) - logits);
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS [REPS] [PROMPT_TOKENS] [GEN_TOKENS]\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[2]);
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    const int n_prompt = argc > 4 ? atoi(argv[4]) : 128;
    const int n_gen = argc > 5 ? atoi(argv[5]) : 128;

    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::vector<llama_token> base(4096);
    const int n_base = llama_tokenize(vocab, PROMPT, (int) strlen(PROMPT), base.data(), (int) base.size(), false, false);
    if (n_base <= 0) { fprintf(stderr, "tokenizing failed\n"); return 1; }
    std::vector<llama_token> prompt(n_prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = base[i % n_base];

    std::vector<double> ttft, prefill, decode;
    std::vector<llama_token> first;
    // rep 0 warms up (caches, page faults, the thread pool) and is not counted.
    for (int rep = 0; rep <= reps; rep++) {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = n_prompt + n_gen;
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        const auto t0 = clk::now();
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "no context\n"); return 1; }
        llama_batch batch = llama_batch_init(std::max(n_prompt, 1), 0, 1);
        batch.n_tokens = n_prompt;
        for (int i = 0; i < n_prompt; i++) {
            batch.token[i] = prompt[i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = i == n_prompt - 1;
        }
        const auto t1 = clk::now();
        if (llama_decode(ctx, batch)) { fprintf(stderr, "prefill failed\n"); return 1; }
        llama_token next = argmax(ctx, n_prompt - 1, n_vocab);
        const auto t2 = clk::now();
        std::vector<llama_token> out{next};
        for (int i = 1; i < n_gen; i++) {
            batch.n_tokens = 1;
            batch.token[0] = next;
            batch.pos[0] = n_prompt + i - 1;
            batch.n_seq_id[0] = 1;
            batch.seq_id[0][0] = 0;
            batch.logits[0] = 1;
            if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
            next = argmax(ctx, 0, n_vocab);
            out.push_back(next);
        }
        const auto t3 = clk::now();
        llama_batch_free(batch);
        llama_free(ctx);
        if (rep == 0) { first = out; continue; }
        ttft.push_back(ms(t0, t2));
        prefill.push_back(n_prompt / (ms(t1, t2) / 1e3));
        decode.push_back((n_gen - 1) / (ms(t2, t3) / 1e3));
        printf("rep %d: ttft %.1f ms (context %.1f ms) prefill %.1f tok/s decode %.2f tok/s\n",
               rep, ttft.back(), ms(t0, t1), prefill.back(), decode.back());
    }
    printf("first 16 greedy ids:");
    for (size_t i = 0; i < 16 && i < first.size(); i++) printf(" %d", first[i]);
    printf("\nsystem_info: %s\n", llama_print_system_info());
    printf("RESULT ttft_ms=%.1f decode=%.2f pp=%.1f\n", median(ttft), median(decode), median(prefill));
    llama_model_free(model);
    return 0;
}
