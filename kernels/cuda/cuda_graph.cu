// cuda_graph.cu: one training step captured as a CUDA graph and replayed (train.cuda_graph).
// Every op of the step launches on the context's stream with fixed pointers and reads its
// per-step values (Adam scalars, the skip verdict) from device memory, so one capture replays
// every later step. NCCL collectives on their own stream join the capture through events.
#include "cuda_common.h"

typedef struct {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
} CudaGraph;

void cuda_graph_begin(OpsContext *ctx) {
    CHECK(ctx->graph == NULL, "graph_begin: a step graph is already captured");
    // ThreadLocal: other threads' CUDA calls (none today) may not disturb the capture.
    CUDA_CHECK(cudaStreamBeginCapture(cuda_stream(ctx), cudaStreamCaptureModeThreadLocal));
}

void cuda_graph_end(OpsContext *ctx) {
    CudaGraph *g = (CudaGraph *)xcalloc(1, sizeof *g);
    CUDA_CHECK(cudaStreamEndCapture(cuda_stream(ctx), &g->graph));
    CUDA_CHECK(cudaGraphInstantiateWithFlags(&g->exec, g->graph, 0));
    ctx->graph = g;
}

void cuda_graph_launch(OpsContext *ctx) {
    CudaGraph *g = (CudaGraph *)ctx->graph;
    CHECK(g != NULL, "graph_launch before graph_end");
    CUDA_CHECK(cudaGraphLaunch(g->exec, cuda_stream(ctx)));
}

void cuda_graph_destroy(OpsContext *ctx) {
    CudaGraph *g = (CudaGraph *)ctx->graph;
    if (!g) return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    CUDA_CHECK(cudaGraphDestroy(g->graph));
    free(g);
    ctx->graph = NULL;
}
