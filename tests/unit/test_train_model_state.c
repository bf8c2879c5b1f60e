// test_train_model_state.c: the registry -> named tensors mapping of src/train/model_state.c:
// names ("model/<key>", "optim/<key>/exp_avg", "optim/<key>/exp_avg_sq"), shapes, offsets into the
// flat buffers (trainable first), moments only for trainable entries, and a round trip through a
// file with and without the Adam state.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "test_util.h"
#include "train/model_state.h"

static void make_registry(ParamRegistry *r) {
    param_registry_init(r);
    param_registry_add(r, "_encoder._conv_1.weight", 1, INIT_KAIMING_UNIFORM, 48, 4, (int[]){8, 3, 4, 4});
    param_registry_add(r, "_vq_vae._ema_cluster_size", 0, INIT_ONE, 0, 1, (int[]){16});
    param_registry_add(r, "_encoder._conv_1.bias", 1, INIT_BIAS_UNIFORM, 48, 1, (int[]){8});
    param_registry_finalize(r);
}

static void test_mapping(TestCounts *c, const ParamRegistry *r, CheckpointState *st) {
    ModelTensors ts;
    model_state_tensors(st, &ts);
    EXPECT(c, ts.count == 3 + 2 * 2, "%d tensors, want 7", ts.count);
    for (int i = 0; i < r->count; i++) {
        const ParamEntry *e = &r->entries[i];
        char want[CKPT_NAME_MAX];
        snprintf(want, sizeof want, "model/%s", e->key);
        const CkptTensor *t = &ts.items[i];
        int same_shape = t->ndim == e->ndim;
        for (int d = 0; same_shape && d < e->ndim; d++) same_shape = t->shape[d] == e->shape[d];
        EXPECT(c, strcmp(t->name, want) == 0 && same_shape && t->data == st->values + e->offset && !t->non_negative,
               "tensor %d: '%s' (want '%s'), shape %d, data offset %td", i, t->name, want, same_shape,
               t->data - st->values);
    }
    const ParamEntry *bias = param_registry_find(r, "_encoder._conv_1.bias");
    int found = 0;
    for (int i = r->count; i < ts.count; i++) {
        const CkptTensor *t = &ts.items[i];
        EXPECT(c, strstr(t->name, "_ema_cluster_size") == NULL, "a buffer got moments: %s", t->name);
        if (strcmp(t->name, "optim/_encoder._conv_1.bias/exp_avg_sq") == 0)
            found = t->data == st->exp_avg_sq + bias->offset && t->non_negative;
    }
    EXPECT(c, found, "optim/_encoder._conv_1.bias/exp_avg_sq missing or not pointing at its moments");
    CheckpointState no_moments = {r, st->values, NULL, NULL};
    model_state_tensors(&no_moments, &ts);
    EXPECT(c, ts.count == 3, "without moments: %d tensors, want 3", ts.count);
}

static void test_round_trip(TestCounts *c, const ParamRegistry *r, CheckpointState *st, const char *path) {
    size_t total = r->total_count, trainable = r->trainable_count;
    for (size_t i = 0; i < total; i++) st->values[i] = (float)i * 0.5f - 3.0f;
    for (size_t i = 0; i < trainable; i++) st->exp_avg[i] = -(float)i, st->exp_avg_sq[i] = (float)i;
    CheckpointMeta meta;
    checkpoint_meta_init(&meta);
    meta.world_size = 1;
    copy_string(meta.arch, sizeof meta.arch, "resnet");
    copy_string(meta.quantizer, sizeof meta.quantizer, "ema");
    char err[1024] = "";
    int rc = model_state_save(path, st, &meta, "model:\n  arch: resnet\n", err, sizeof err);
    EXPECT(c, rc == 0, "save: %s", err);
    float *v = xcalloc(total + 2 * trainable, sizeof(float));
    CheckpointState back = {r, v, v + total, v + total + trainable};
    rc = model_state_load(path, &back, 1, NULL, NULL, err, sizeof err);
    EXPECT(c, rc == 0 && memcmp(v, st->values, total * sizeof(float)) == 0 &&
                  memcmp(back.exp_avg, st->exp_avg, trainable * sizeof(float)) == 0 &&
                  memcmp(back.exp_avg_sq, st->exp_avg_sq, trainable * sizeof(float)) == 0,
           "round trip with moments: rc %d: %s", rc, err);
    memset(v, 0, (total + 2 * trainable) * sizeof(float));
    rc = model_state_load(path, &back, 0, NULL, NULL, err, sizeof err);
    int moments_zero = 1;
    for (size_t i = 0; i < 2 * trainable; i++) moments_zero &= back.exp_avg[i] == 0.0f;
    EXPECT(c, rc == 0 && memcmp(v, st->values, total * sizeof(float)) == 0 && moments_zero,
           "values only: rc %d, moments untouched %d: %s", rc, moments_zero, err);
    CheckpointState weights_only = {r, st->values, NULL, NULL};
    rc = model_state_load(path, &weights_only, 1, NULL, NULL, err, sizeof err);
    EXPECT(c, rc != 0 && strstr(err, "needs buffers"), "moments asked without buffers: rc %d: %s", rc, err);
    free(v);
}

int main(void) {
    TestCounts c = {0, 0};
    ParamRegistry r;
    make_registry(&r);
    float *buf = xcalloc(r.total_count + 2 * r.trainable_count, sizeof(float));
    CheckpointState st = {&r, buf, buf + r.total_count, buf + r.total_count + r.trainable_count};
    test_mapping(&c, &r, &st);
    char path[] = "/tmp/test_train_model_state.XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    test_round_trip(&c, &r, &st, path);
    unlink(path);
    free(buf);
    return test_finish("test_train_model_state", &c);
}
