// test_io_checkpoint.c: HDF5 checkpoints of named tensors. Round trip (bit-exact values, moments,
// meta, config), loading without /optim, the on-disk layout, `info`, a folder with keep/latest,
// the resume candidate order, and a file written by vqvae_dist 0.1.0. Broken files and failed
// saves: test_io_checkpoint_bad.c.
// With VQ_CKPT_SAMPLE_OUT=PATH it only writes a deterministic sample checkpoint to PATH (for
// tests/torch/test_checkpoint_h5py.py, which recomputes the values below).
#include "ckpt_fixture.h"

// ---- round trip ----

static void expect_same_meta(TestCounts *c, const CheckpointMeta *got, const CheckpointMeta *meta) {
    EXPECT(c, got->step == meta->step, "step %lld", (long long)got->step);
    EXPECT(c, got->epoch == meta->epoch, "epoch %lld", (long long)got->epoch);
    EXPECT(c, got->epoch_offset == meta->epoch_offset, "epoch_offset %lld", (long long)got->epoch_offset);
    EXPECT(c, got->samples_seen == meta->samples_seen, "samples_seen %lld", (long long)got->samples_seen);
    EXPECT(c, got->seed == meta->seed, "seed %llx", (unsigned long long)got->seed);
    EXPECT(c, got->world_size == meta->world_size, "world_size %d", got->world_size);
    EXPECT(c, strcmp(got->arch, meta->arch) == 0, "arch '%s'", got->arch);
    EXPECT(c, strcmp(got->quantizer, meta->quantizer) == 0, "quantizer '%s'", got->quantizer);
    EXPECT(c, got->data_variance == meta->data_variance, "data_variance %.17g", got->data_variance);
    EXPECT(c, got->image_channels == meta->image_channels && got->image_height == meta->image_height &&
                  got->image_width == meta->image_width,
           "image %d x %d x %d", got->image_channels, got->image_height, got->image_width);
    EXPECT(c, got->has_optim == 1, "has_optim %d", got->has_optim);
    EXPECT(c, got->adam_step == meta->adam_step, "adam_step %lld", (long long)got->adam_step);
    EXPECT(c, memcmp(&got->lr, &meta->lr, sizeof(float)) == 0, "lr %g", (double)got->lr);
    EXPECT(c, memcmp(&got->beta1, &meta->beta1, sizeof(float)) == 0, "beta1 %g", (double)got->beta1);
    EXPECT(c, memcmp(&got->beta2, &meta->beta2, sizeof(float)) == 0, "beta2 %g", (double)got->beta2);
    EXPECT(c, memcmp(&got->eps, &meta->eps, sizeof(float)) == 0, "eps %g", (double)got->eps);
    EXPECT(c, memcmp(&got->weight_decay, &meta->weight_decay, sizeof(float)) == 0, "weight_decay %g",
           (double)got->weight_decay);
    EXPECT(c, strcmp(got->program_version, VQ_VERSION) == 0, "program_version '%s'", got->program_version);
}

static void test_round_trip(TestCounts *c, const char *path) {
    Model a, b;
    model_init(&a, 8);
    model_init(&b, 8);
    model_fill_random(&a, 1);
    CheckpointMeta meta = test_meta(1234), got;
    char tmp[520], err[1024] = "";
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    int rc = model_save(path, &a, &meta, err, sizeof err);
    EXPECT(c, rc == 0, "save failed: %s", err);
    EXPECT(c, file_exists(path) && !file_exists(tmp), "after save: file %d, tmp %d", file_exists(path),
           file_exists(tmp));

    char *config = NULL;
    memset(&got, 0xAB, sizeof got);
    rc = model_load(path, &b, &got, &config, err, sizeof err);
    EXPECT(c, rc == 0, "load failed: %s", err);
    EXPECT(c, memcmp(a.values, b.values, a.total * sizeof(float)) == 0, "values differ after round trip");
    EXPECT(c, memcmp(a.m, b.m, a.trainable * sizeof(float)) == 0, "exp_avg differs after round trip");
    EXPECT(c, memcmp(a.v, b.v, a.trainable * sizeof(float)) == 0, "exp_avg_sq differs after round trip");
    expect_same_meta(c, &got, &meta);
    EXPECT(c, config && strcmp(config, k_config) == 0, "config text differs: '%s'", config ? config : "(null)");
    free(config);

    // read_meta: the same attributes without any tensor list.
    CheckpointMeta m2;
    memset(&m2, 0, sizeof m2);
    config = NULL;
    rc = checkpoint_read_meta(path, CKPT_LOAD_OPTIM, &m2, &config, err, sizeof err);
    EXPECT(c, rc == 0 && m2.step == meta.step && m2.seed == meta.seed && m2.samples_seen == meta.samples_seen &&
                  strcmp(m2.quantizer, "ema") == 0 && m2.lr == meta.lr && m2.data_variance == meta.data_variance,
           "read_meta rc %d step %lld: %s", rc, (long long)m2.step, err);
    EXPECT(c, config && strcmp(config, k_config) == 0, "read_meta config differs");
    free(config);
    model_free(&a);
    model_free(&b);
}

// Without CKPT_LOAD_OPTIM only /model is read; a file saved without moments loads only so.
static void test_without_optim(TestCounts *c, const char *dir, const char *path) {
    Model a, b;
    model_init(&a, 8);
    model_init(&b, 8);
    model_fill_random(&a, 1);
    CheckpointMeta meta = test_meta(1234), got;
    char err[1024] = "";
    model_fill(&b, 0.0f);
    int rc = checkpoint_load(path, b.t, b.nt, 0, &got, NULL, err, sizeof err);
    EXPECT(c, rc == 0 && memcmp(a.values, b.values, a.total * sizeof(float)) == 0,
           "load without moments: rc %d: %s", rc, err);
    int moments_zero = 1;
    for (size_t i = 0; i < b.trainable; i++) moments_zero &= b.m[i] == 0.0f && b.v[i] == 0.0f;
    EXPECT(c, moments_zero && !got.has_optim, "a load without moments touched the moments (or read /optim: %d)",
           got.has_optim);

    char path2[512];
    snprintf(path2, sizeof path2, "%s/no_optim.h5", dir);
    rc = checkpoint_save(path2, a.t, a.nmodel, &meta, k_config, err, sizeof err);
    EXPECT(c, rc == 0, "save without moments: %s", err);
    rc = model_load(path2, &b, NULL, NULL, err, sizeof err);
    EXPECT(c, rc != 0 && strstr(err, "'/optim'") && strstr(err, "missing"), "load of moments-less file: rc %d: %s",
           rc, err);
    rc = checkpoint_load(path2, b.t, b.nt, 0, NULL, NULL, err, sizeof err);
    EXPECT(c, rc == 0, "moments-less file without moments: %s", err);
    CheckpointMeta m;
    rc = checkpoint_read_meta(path2, CKPT_LOAD_OPTIM, &m, NULL, err, sizeof err);
    EXPECT(c, rc == 0 && m.has_optim == 0, "read_meta of a moments-less file: rc %d has_optim %d", rc, m.has_optim);

    // Old files have no data_variance or image shape: they load, marked unknown.
    CheckpointMeta old = meta;
    old.data_variance = NAN;
    old.image_channels = old.image_height = old.image_width = 0;
    rc = checkpoint_save(path2, a.t, a.nmodel, &old, k_config, err, sizeof err);
    hid_t f = H5Fopen(path2, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(c, rc == 0 && f >= 0 && H5Aexists(f, "data_variance") == 0 && H5Aexists(f, "image_channels") == 0,
           "unknown fields were written: %s", err);
    if (f >= 0) H5Fclose(f);
    rc = checkpoint_read_meta(path2, CKPT_LOAD_OPTIM, &m, NULL, err, sizeof err);
    EXPECT(c, rc == 0 && isnan(m.data_variance) && m.image_channels == 0 && m.image_width == 0,
           "file without data_variance: rc %d variance %g channels %d: %s", rc, m.data_variance, m.image_channels,
           err);
    model_free(&a);
    model_free(&b);
}

// ---- the layout, seen through raw HDF5 ----

static void expect_attr_type(TestCounts *c, hid_t f, const char *name, hid_t want) {
    hid_t attr = H5Aopen(f, name, H5P_DEFAULT), at = H5Aget_type(attr);
    EXPECT(c, H5Tequal(at, want) > 0, "%s has another type", name);
    H5Tclose(at);
    H5Aclose(attr);
}

static void test_root_layout(TestCounts *c, hid_t f) {
    H5F_info2_t info;
    EXPECT(c, H5Fget_info2(f, &info) >= 0 && info.super.version >= 2, "superblock version %u (want >= 2)",
           info.super.version);
    hid_t attr = H5Aopen(f, "format", H5P_DEFAULT), at = H5Aget_type(attr);
    EXPECT(c, H5Tget_class(at) == H5T_STRING && H5Tis_variable_str(at) > 0 && H5Tget_cset(at) == H5T_CSET_UTF8,
           "format attribute is not a variable-length UTF-8 string");
    H5Tclose(at);
    H5Aclose(attr);
    expect_attr_type(c, f, "seed", H5T_STD_U64LE);
    expect_attr_type(c, f, "step", H5T_STD_I64LE);
    expect_attr_type(c, f, "data_variance", H5T_IEEE_F64LE);
    expect_attr_type(c, f, "image_width", H5T_STD_I64LE);
    char *created = NULL;
    attr = H5Aopen(f, "created", H5P_DEFAULT);
    at = H5Aget_type(attr);
    H5Aread(attr, at, &created);
    EXPECT(c, created && strlen(created) == 20 && created[4] == '-' && created[10] == 'T' && created[19] == 'Z',
           "created '%s' is not ISO 8601 UTC", created ? created : "(null)");
    if (created) H5free_memory(created);
    H5Tclose(at);
    H5Aclose(attr);
}

static void test_dataset_layout(TestCounts *c, hid_t f) {
    hid_t d = H5Dopen2(f, "/model/_encoder._conv_1.weight", H5P_DEFAULT);
    hid_t dt = H5Dget_type(d), ds = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    hsize_t dims[4] = {0}, chunk[4] = {0};
    int nd = H5Sget_simple_extent_dims(ds, dims, NULL);
    EXPECT(c, H5Tequal(dt, H5T_IEEE_F32LE) > 0, "dataset type is not float32 LE");
    EXPECT(c, nd == 4 && dims[0] == 8 && dims[1] == 3 && dims[2] == 4 && dims[3] == 4, "shape rank %d", nd);
    EXPECT(c, H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, chunk) == 4 && chunk[0] == 8 &&
                  chunk[3] == 4, "not one chunk per dataset");
    int has_fletcher = 0;
    for (int i = 0; i < H5Pget_nfilters(dcpl); i++) {
        unsigned flags, cfg;
        size_t ne = 0;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &ne, NULL, 0, NULL, &cfg) == H5Z_FILTER_FLETCHER32)
            has_fletcher = 1;
    }
    EXPECT(c, has_fletcher, "no fletcher32 filter");
    H5Pclose(dcpl);
    H5Sclose(ds);
    H5Tclose(dt);
    H5Dclose(d);
    htri_t cs_exists = H5Lexists(f, "/model/_vq_vae._ema_cluster_size", H5P_DEFAULT) > 0;
    htri_t cs_moment = H5Lexists(f, "/optim/_vq_vae._ema_cluster_size", H5P_DEFAULT) > 0;
    htri_t w_moment = H5Lexists(f, "/optim/_vq_vae._embedding.weight", H5P_DEFAULT) > 0 &&
                      H5Lexists(f, "/optim/_vq_vae._embedding.weight/exp_avg_sq", H5P_DEFAULT) > 0;
    EXPECT(c, cs_exists && !cs_moment && w_moment, "moments layout: buffer %d, buffer moment %d, weight moment %d",
           (int)cs_exists, (int)cs_moment, (int)w_moment);
}

static void test_layout(TestCounts *c, const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(c, f >= 0, "raw H5Fopen failed");
    if (f < 0) return;
    test_root_layout(c, f);
    test_dataset_layout(c, f);
    H5Fclose(f);
}

// print_info: the tensors, their count, the new fields and the config appear on stdout.
static void test_print_info(TestCounts *c, const char *dir, const char *path) {
    char info_path[512], err[1024] = "";
    snprintf(info_path, sizeof info_path, "%s/info.txt", dir);
    int rc = capture_stdout(info_path, checkpoint_print_info, path, err, sizeof err);
    size_t info_len;
    char *info = (char *)read_bytes(info_path, &info_len);
    if (info) info[info_len] = '\0';
    Model a;
    model_init(&a, 8);
    char want_count[64];
    snprintf(want_count, sizeof want_count, "parameters: %zu floats in 6 tensors", a.total);
    EXPECT(c, rc == 0 && info && strstr(info, "_encoder._conv_1.weight") && strstr(info, "[8, 3, 4, 4]") &&
                  strstr(info, want_count) && strstr(info, "seed             18364758544493064720") &&
                  strstr(info, "data_variance    0.0631") && strstr(info, "3 x 32 x 28") && strstr(info, k_config),
           "print_info rc %d (%s) output:\n%s", rc, err, info ? info : "(none)");
    free(info);
    model_free(&a);
}

// ---- a folder ----

static void test_save_in_dir(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 2);
    char run[512], out[600], err[1024] = "", names[1024], want[600];
    snprintf(run, sizeof run, "%s/runs/deep/run1", dir);   // mkdir -p
    for (int i = 1; i <= 4; i++) {
        CheckpointMeta meta = test_meta(100 * i);
        int rc = checkpoint_save_in_dir(run, a.t, a.nt, &meta, k_config, 2, out, sizeof out, err, sizeof err);
        EXPECT(c, rc == 0, "save_in_dir step %d: %s", 100 * i, err);
        snprintf(want, sizeof want, "%s/ckpt_%08d.h5", run, 100 * i);
        EXPECT(c, strcmp(out, want) == 0, "path_out '%s', want '%s'", out, want);
    }
    list_names(run, names, sizeof names);
    EXPECT(c, strcmp(names, "ckpt_00000300.h5 ckpt_00000400.h5 latest") == 0, "folder holds: %s", names);
    snprintf(want, sizeof want, "%s/latest", run);
    size_t len;
    char *latest = (char *)read_bytes(want, &len);
    EXPECT(c, latest && len == 17 && memcmp(latest, "ckpt_00000400.h5\n", 17) == 0, "latest is '%.*s'", (int)len,
           latest ? latest : "");
    free(latest);

    // keep = 0 keeps everything.
    char all[512];
    snprintf(all, sizeof all, "%s/keep_all", dir);
    for (int i = 1; i <= 3; i++) {
        CheckpointMeta meta = test_meta(i);
        checkpoint_save_in_dir(all, a.t, a.nt, &meta, k_config, 0, NULL, 0, err, sizeof err);
    }
    list_names(all, names, sizeof names);
    EXPECT(c, strcmp(names, "ckpt_00000001.h5 ckpt_00000002.h5 ckpt_00000003.h5 latest") == 0, "keep 0 folder: %s",
           names);

    // A folder that cannot be created (under a plain file).
    char plain[512], under[600];
    snprintf(plain, sizeof plain, "%s/plain_file", dir);
    write_bytes(plain, "x", 1);
    snprintf(under, sizeof under, "%s/sub", plain);
    CheckpointMeta meta = test_meta(1);
    int rc = checkpoint_save_in_dir(under, a.t, a.nt, &meta, k_config, 2, NULL, 0, err, sizeof err);
    EXPECT(c, rc != 0 && strstr(err, "cannot create checkpoint folder"), "save_in_dir under a file: rc %d: %s", rc,
           err);
    model_free(&a);
}

static void expect_list(TestCounts *c, const char *what, const char *run, int max, int n_want, const char *w0,
                        const char *w1, const char *w2) {
    char *paths[8] = {0};
    const char *want[3] = {w0, w1, w2};
    int n = checkpoint_list_in_dir(run, paths, max);
    int ok = n == n_want;
    for (int i = 0; ok && i < n; i++) ok = strcmp(paths[i], want[i]) == 0;
    EXPECT(c, ok, "%s: %d: %s, %s, %s", what, n, n > 0 ? paths[0] : "", n > 1 ? paths[1] : "", n > 2 ? paths[2] : "");
    for (int i = 0; i < n; i++) free(paths[i]);
}

static void test_list(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 3);
    char run[512], err[1024] = "", p[600], want[3][600];
    snprintf(run, sizeof run, "%s/list", dir);
    int steps[3] = {100, 300, 200};   // the last saved (200) is `latest` although 300 is newer
    for (int i = 0; i < 3; i++) {
        CheckpointMeta meta = test_meta(steps[i]);
        checkpoint_save_in_dir(run, a.t, a.nt, &meta, k_config, 0, NULL, 0, err, sizeof err);
    }
    // Files that are not checkpoints are never candidates.
    const char *noise[3] = {"ckpt_abc.h5", "ckpt_00000500.h5.tmp", "notes.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", run, noise[i]);
        write_bytes(p, "x", 1);
    }
    snprintf(want[0], sizeof want[0], "%s/ckpt_00000200.h5", run);
    snprintf(want[1], sizeof want[1], "%s/ckpt_00000300.h5", run);
    snprintf(want[2], sizeof want[2], "%s/ckpt_00000100.h5", run);
    expect_list(c, "list", run, 8, 3, want[0], want[1], want[2]);
    expect_list(c, "list max 2", run, 2, 2, want[0], want[1], NULL);

    // `latest` naming a file that is gone: by step only.
    snprintf(p, sizeof p, "%s/latest", run);
    write_bytes(p, "ckpt_00000999.h5\n", 17);
    expect_list(c, "list with a stale latest", run, 8, 3, want[1], want[0], want[2]);

    snprintf(p, sizeof p, "%s/no_such_folder", dir);
    expect_list(c, "list of a missing folder", p, 8, 0, NULL, NULL, NULL);
    model_free(&a);
}

// ---- the sample for tests/torch/test_checkpoint_h5py.py ----

// Exact in float32 and numpy: value = ((7 i + k) mod 251 - 125) / 64 for flat index i of the k-th
// registered entry; exp_avg = value / 2; exp_avg_sq = value^2.
static float sample_value(int k, size_t i) { return (float)((int)((7 * i + (size_t)k) % 251) - 125) / 64.0f; }

static int is_sample(const Model *md) {
    int ok = 1;
    for (int k = 0; k < SAMPLE_ENTRIES; k++) {
        for (size_t i = 0; i < md->size[k]; i++) {
            float x = sample_value(k, i);
            ok &= md->values[md->offset[k] + i] == x;
            if (md->e[k].trainable)
                ok &= md->m[md->moment_offset[k] + i] == x / 2.0f && md->v[md->moment_offset[k] + i] == x * x;
        }
    }
    return ok;
}

static int write_sample(const char *path) {
    TestCounts c = {0, 0};
    Model md;
    model_init(&md, 8);
    for (int k = 0; k < SAMPLE_ENTRIES; k++) {
        for (size_t i = 0; i < md.size[k]; i++) {
            float x = sample_value(k, i);
            md.values[md.offset[k] + i] = x;
            if (md.e[k].trainable) {
                md.m[md.moment_offset[k] + i] = x / 2.0f;
                md.v[md.moment_offset[k] + i] = x * x;
            }
        }
    }
    CheckpointMeta meta = test_meta(4242);
    meta.epoch = 7;
    meta.epoch_offset = 96;
    meta.samples_seen = 5000000000LL;
    meta.seed = 18446744073709551557ULL;
    meta.world_size = 2;
    char err[1024] = "";
    int rc = model_save(path, &md, &meta, err, sizeof err);
    EXPECT(&c, rc == 0, "sample save failed: %s", err);
    if (rc == 0) printf("sample checkpoint written to %s\n", path);
    model_free(&md);
    return test_finish("test_io_checkpoint (sample)", &c);
}

// tests/data/checkpoint_v1_0.1.0.h5 is the sample as vqvae_dist 0.1.0 wrote it (commit 85426dd, before
// data_variance and the image shape were stored): it must still load, with those unknown.
static void test_old_file(TestCounts *c) {
    const char *src = getenv("VQ_SOURCE_DIR");
    char path[1024], err[1024] = "";
    snprintf(path, sizeof path, "%s/tests/data/checkpoint_v1_0.1.0.h5", src ? src : ".");
    Model md;
    model_init(&md, 8);
    CheckpointMeta m;
    char *config = NULL;
    int rc = model_load(path, &md, &m, &config, err, sizeof err);
    EXPECT(c, rc == 0 && is_sample(&md), "the 0.1.0 sample does not load as written: rc %d: %s", rc, err);
    EXPECT(c, rc == 0 && m.step == 4242 && m.seed == 18446744073709551557ULL && m.has_optim && m.adam_step == 4242 &&
                  isnan(m.data_variance) && m.image_channels == 0 && config && strcmp(config, k_config) == 0,
           "the 0.1.0 sample's meta: step %lld variance %g channels %d", (long long)m.step, m.data_variance,
           m.image_channels);
    free(config);
    model_free(&md);
}

int main(void) {
    const char *sample = getenv("VQ_CKPT_SAMPLE_OUT");
    if (sample && *sample) return write_sample(sample);

    TestCounts c = {0, 0};
    char dir[] = "/tmp/test_io_checkpoint.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/round.h5", dir);
    test_round_trip(&c, path);
    test_without_optim(&c, dir, path);
    test_layout(&c, path);
    test_print_info(&c, dir, path);
    test_save_in_dir(&c, dir);
    test_list(&c, dir);
    test_old_file(&c);
    remove_tree(dir);
    return test_finish("test_io_checkpoint", &c);
}
