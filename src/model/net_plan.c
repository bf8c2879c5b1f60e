// net_plan.c: net_finalize: check the list, plan the backward pass, lay out the arena, resolve
// every layer's pointers. All of it happens once, when the network is built.
//
// The gradient plan simulates backward (last layer first). A slot's gradient is born at the first
// contribution (the backward of its last reader) and dies after its producer's backward read it.
// Buffers are reference-counted by the slots that hold them: an input whose gradient equals the
// output's (a residual add, a pass-through) shares the output's buffer; a pointwise layer computes
// in place when the buffer is its alone; a dead buffer is reused by the next gradient that fits.
// Accumulating into a shared buffer first copies it (copy on write), so sharing never changes a
// value another slot still needs.
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "layers.h"
#include "net.h"

enum { ARENA_ALIGN = 64, BUF_DEAD = -2, BUF_UNBORN = -1 };

typedef struct {
    size_t floats;
    size_t offset;   // bytes into the gradient area
    int refs;        // slots holding it
} GradBuf;

typedef struct {
    GradBuf *bufs;
    int count, cap;
    int *cur;                 // per slot: its gradient buffer, BUF_UNBORN or BUF_DEAD
    size_t *dy, (*dx)[LAYER_MAX_IN], (*cow)[LAYER_MAX_IN];   // per layer: buffer index + 1 (0 = none)
    size_t scratch_floats;
} Plan;

static size_t align_up(size_t x) { return (x + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; }

// The smallest free buffer that holds n floats, else a new one.
static int plan_alloc(Plan *p, size_t n) {
    int best = -1;
    for (int i = 0; i < p->count; i++)
        if (p->bufs[i].refs == 0 && p->bufs[i].floats >= n && (best < 0 || p->bufs[i].floats < p->bufs[best].floats))
            best = i;
    if (best < 0) {
        if (p->count == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 16;
            p->bufs = realloc(p->bufs, (size_t)p->cap * sizeof *p->bufs);
            if (!p->bufs) fatal("out of host memory planning the network");
        }
        best = p->count++;
        p->bufs[best] = (GradBuf){.floats = n};
    }
    p->bufs[best].refs = 1;
    return best;
}

// In-place layers write over input 0. Allowed only when the kind says so, at most once per slot
// (a later in-place write would change the value the first one's backward reads), when the slot's
// producer does not read its own output in backward (a ReLU does), and when no layer between the
// slot's producer and this one reads the value about to be overwritten.
static void check_inplace(const Net *net) {
    int *inplace_writer = xcalloc((size_t)net->slot_count, sizeof(int));
    for (int i = 0; i < net->layer_count; i++) {
        const Layer *L = &net->layers[i];
        if (L->out < 0 || L->n_in == 0 || L->in[0] != L->out) continue;
        const Slot *s = &net->slots[L->out];
        CHECK(layer_impl(L->kind)->inplace_ok, "layer '%s' (%s) cannot run in place", L->name,
              layer_impl(L->kind)->name);
        CHECK(!inplace_writer[L->out], "slot '%s' is written in place twice (layers '%s' and '%s')", s->name,
              net->layers[inplace_writer[L->out] - 1].name, L->name);
        inplace_writer[L->out] = i + 1;
        const Layer *producer = &net->layers[s->producer];
        CHECK(s->producer == i || !layer_impl(producer->kind)->reads_output, "layer '%s' writes over slot '%s' in "
              "place, but its producer '%s' (%s) reads that value in backward", L->name, s->name, producer->name,
              layer_impl(producer->kind)->name);
        for (int j = s->producer + 1; j < i; j++)
            for (int k = 0; k < net->layers[j].n_in; k++)
                CHECK(net->layers[j].in[k] != L->out, "layer '%s' writes over slot '%s' in place, but layer '%s' "
                      "reads it before and needs the old value", L->name, s->name, net->layers[j].name);
    }
    free(inplace_writer);
}

// Input j of layer i takes over (or shares) the output gradient's buffer when the kind allows.
static int plan_try_alias(Plan *p, const LayerImpl *impl, int j, int b_out, int first_alias) {
    if (b_out < 0) return 0;
    if (impl->alias[j] == ALIAS_SHARED) return 1;
    return impl->alias[j] == ALIAS_EXCLUSIVE && p->bufs[b_out].refs == 1 && first_alias;
}

static void plan_input(Net *net, Plan *p, int i, int j, int b_out, int *aliased) {
    Layer *L = &net->layers[i];
    const LayerImpl *impl = layer_impl(L->kind);
    int s = L->in[j];
    if (!net->slots[s].needs_grad) {
        L->mode[j] = GRAD_NONE;
        return;
    }
    size_t n = net->slots[s].count;
    if (j == 0 && s == L->out) {   // in place: input 0 is the output slot itself
        if (impl->alias[0] == ALIAS_SHARED || p->bufs[b_out].refs == 1) {
            L->mode[0] = GRAD_ALIAS;
        } else {   // the buffer is shared: write the transformed gradient into a fresh one
            p->bufs[b_out].refs--;
            p->cur[s] = plan_alloc(p, n);
            L->mode[0] = GRAD_WRITE;
        }
    } else if (p->cur[s] == BUF_UNBORN) {
        if (plan_try_alias(p, impl, j, b_out, !*aliased)) {
            CHECK(net->slots[L->out].count == n, "layer '%s': input '%s' cannot share the output's gradient (sizes "
                  "differ)", L->name, net->slots[s].name);
            p->cur[s] = b_out;
            p->bufs[b_out].refs++;
            *aliased = 1;
            L->mode[j] = GRAD_ALIAS;
        } else {
            p->cur[s] = plan_alloc(p, n);
            L->mode[j] = GRAD_WRITE;
        }
    } else {
        CHECK(p->cur[s] >= 0, "layer '%s' reads slot '%s' after the slot's producer", L->name, net->slots[s].name);
        L->mode[j] = GRAD_ACCUM;
        // A pointwise layer may form its contribution in dy when dy is its alone and dies here.
        L->accum_in_dy[j] = plan_try_alias(p, impl, j, b_out, !*aliased) && impl->alias[j] == ALIAS_EXCLUSIVE &&
                            net->slots[L->out].count == n;
        if (!L->accum_in_dy[j] && n > p->scratch_floats) p->scratch_floats = n;
        if (p->bufs[p->cur[s]].refs > 1) {   // copy on write
            p->bufs[p->cur[s]].refs--;
            p->cow[i][j] = (size_t)p->cur[s] + 1;
            p->cur[s] = plan_alloc(p, n);
        }
    }
    p->dx[i][j] = (size_t)p->cur[s] + 1;
}

static void plan_backward(Net *net, Plan *p) {
    for (int s = 0; s < net->slot_count; s++) p->cur[s] = BUF_UNBORN;
    for (int i = net->layer_count - 1; i >= 0; i--) {
        Layer *L = &net->layers[i];
        int o = L->out, b_out = -1;
        if (o >= 0 && net->slots[o].needs_grad) {
            b_out = p->cur[o];
            CHECK(b_out >= 0, "slot '%s' (written by layer '%s') is never used by a later layer, so it has no "
                  "gradient; drop the layer or mark the slot as needing none", net->slots[o].name, L->name);
            p->dy[i] = (size_t)b_out + 1;
        }
        int aliased = 0;
        for (int j = 0; j < L->n_in; j++) plan_input(net, p, i, j, b_out, &aliased);
        int inplace = L->n_in > 0 && L->in[0] == o;
        if (b_out >= 0 && !inplace) {   // the output's gradient dies with its producer
            p->bufs[b_out].refs--;
            p->cur[o] = BUF_DEAD;
        }
    }
}

static size_t layer_workspace(Net *net) {
    size_t most = 0;
    for (int i = 0; i < net->layer_count; i++) {
        const LayerImpl *impl = layer_impl(net->layers[i].kind);
        if (!impl->prepare) continue;
        size_t bytes = impl->prepare(net, &net->layers[i]);
        if (bytes > most) most = bytes;
    }
    return most;
}

// Offsets: activations first, then the gradient buffers, then the scratch.
static void lay_out(Net *net, Plan *p) {
    size_t at = 0;
    for (int s = 0; s < net->slot_count; s++) {
        net->slots[s].offset = at;
        at += align_up(net->slots[s].count * 4);   // float32 and int32 alike
    }
    net->value_bytes = at;
    for (int b = 0; b < p->count; b++) {
        p->bufs[b].offset = at;
        at += align_up(p->bufs[b].floats * sizeof(float));
    }
    net->grad_bytes = at - net->value_bytes;
    net->grad_buffers = p->count;
    net->scratch_bytes = align_up(p->scratch_floats * sizeof(float));
    net->arena_bytes = at + net->scratch_bytes;
}

static float *buf_ptr(const Net *net, const Plan *p, size_t index_plus_one) {
    return index_plus_one ? (float *)(net->arena + p->bufs[index_plus_one - 1].offset) : NULL;
}

static void resolve_layer(Net *net, const Plan *p, int i, float *params, float *grads) {
    Layer *L = &net->layers[i];
    for (int j = 0; j < L->n_in; j++) {
        L->x[j] = (float *)net->slots[L->in[j]].data;
        L->dx[j] = buf_ptr(net, p, p->dx[i][j]);
        L->cow_from[j] = buf_ptr(net, p, p->cow[i][j]);
    }
    L->y = L->out >= 0 ? (float *)net->slots[L->out].data : NULL;
    L->dy = buf_ptr(net, p, p->dy[i]);
    for (int k = 0; k < LAYER_MAX_PARAMS; k++) {
        if (L->param[k] < 0) continue;
        const ParamEntry *e = &net->registry->entries[L->param[k]];
        L->w[k] = params + e->offset;
        L->dw[k] = e->trainable ? grads + e->offset : NULL;
    }
}

void net_finalize(Net *net, float *params, float *grads) {
    OpsContext *ctx = net->ctx;
    check_inplace(net);
    Plan p = {0};
    p.cur = xcalloc((size_t)net->slot_count, sizeof(int));
    p.dy = xcalloc((size_t)net->layer_count, sizeof *p.dy);
    p.dx = xcalloc((size_t)net->layer_count, sizeof *p.dx);
    p.cow = xcalloc((size_t)net->layer_count, sizeof *p.cow);
    plan_backward(net, &p);
    lay_out(net, &p);

    net->workspace_bytes = layer_workspace(net);
    ctx->ops->reserve_workspace(ctx, net->workspace_bytes);
    net->arena = ctx->ops->alloc(ctx, net->arena_bytes);
    for (int s = 0; s < net->slot_count; s++) net->slots[s].data = net->arena + net->slots[s].offset;
    net->scratch = p.scratch_floats ? (float *)(net->arena + net->value_bytes + net->grad_bytes) : NULL;
    for (int i = 0; i < net->layer_count; i++) resolve_layer(net, &p, i, params, grads);
    free(p.bufs);
    free(p.cur);
    free(p.dy);
    free(p.dx);
    free(p.cow);
}

static void format_dims(const Slot *s, char *buf, size_t len) {
    size_t used = 0;
    for (int i = 0; i < s->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? "x" : "", s->dims[i]);
}

static const char *const MODE_NAMES[] = {"-", "write", "accum", "alias"};

static void print_layers(const Net *net, FILE *out) {
    fprintf(out, "%-4s %-9s %-52s %-14s %-6s %s\n", "#", "kind", "layer", "reads -> writes", "params",
            "input gradients (backward)");
    for (int i = 0; i < net->layer_count; i++) {
        const Layer *L = &net->layers[i];
        char io[32] = "", grads[64] = "";
        int params = 0;
        for (int j = 0; j < L->n_in; j++) {
            size_t used = strlen(io);
            snprintf(io + used, sizeof io - used, "%s%d", j ? "," : "", L->in[j]);
            used = strlen(grads);
            snprintf(grads + used, sizeof grads - used, "%s%s%s", j ? ", " : "", MODE_NAMES[L->mode[j]],
                     L->cow_from[j] ? " (copy first)" : "");
        }
        size_t used = strlen(io);
        if (L->out >= 0) snprintf(io + used, sizeof io - used, " -> %d", L->out);
        for (int k = 0; k < LAYER_MAX_PARAMS; k++) params += L->param[k] >= 0;
        fprintf(out, "%-4d %-9s %-52s %-14s %-6d %s\n", i, layer_impl(L->kind)->name, L->name, io, params, grads);
    }
    fputc('\n', out);
}

void net_print_layout(const Net *net, FILE *out) {
    print_layers(net, out);
    fprintf(out, "%-4s %-52s %-20s %12s %12s  %s\n", "slot", "name", "shape", "offset", "bytes", "written by");
    for (int s = 0; s < net->slot_count; s++) {
        const Slot *sl = &net->slots[s];
        char dims[64];
        format_dims(sl, dims, sizeof dims);
        fprintf(out, "%-4d %-52s %-20s %12zu %12zu  %s%s\n", s, sl->name, dims, sl->offset, sl->count * 4,
                sl->producer >= 0 ? net->layers[sl->producer].name : "(outside: input / model)",
                sl->type == SLOT_I32 ? " [int32]" : "");
    }
    fprintf(out, "\n%d layers; arena %.2f MiB = activations %.2f MiB (%d slots) + gradients %.2f MiB (%d buffers "
            "reused across %d layers) + scratch %.2f MiB; backend workspace %.2f MiB\n",
            net->layer_count, net->arena_bytes / 1048576.0, net->value_bytes / 1048576.0, net->slot_count,
            net->grad_bytes / 1048576.0, net->grad_buffers, net->layer_count, net->scratch_bytes / 1048576.0,
            net->workspace_bytes / 1048576.0);
}
