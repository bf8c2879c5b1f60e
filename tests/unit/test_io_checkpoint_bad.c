// test_io_checkpoint_bad.c: checkpoints that must be refused, each with a specific message that
// names the file (and the dataset or attribute at fault), with no handle left open and the
// caller's tensors untouched; and failed saves that must leave an existing checkpoint untouched.
#include <sys/wait.h>

#include "ckpt_fixture.h"

// ---- the table of broken checkpoints ----

typedef enum {
    BAD_TRUNC_HALF, BAD_TRUNC_100, BAD_EMPTY, BAD_FLIP_DATA, BAD_FLIP_HEAP, BAD_FLIP_SUPERBLOCK, BAD_FLIP_HEADER,
    BAD_EDITED, BAD_SHAPE, BAD_MISSING, BAD_MISSING_MOMENT, BAD_EXTRA, BAD_EXTRA_OPTIM, BAD_FORMAT, BAD_NO_FORMAT,
    BAD_NEWER, BAD_NAN, BAD_NEG_MOMENT, BAD_FLOAT64, BAD_NO_CHECKSUM, BAD_NO_FILE, BAD_NOT_HDF5,
} BadKind;

// How the broken file's checksum header ends up: as the damage left it (a file that rotted on
// disk), rewritten to match (a file some writer produced like that: what HDF5-level checks
// see), or removed (a file from before checksums: HDF5's own checks are all there is).
typedef enum { AS_DAMAGED, RESEALED, UNSEALED } Seal;

typedef struct {
    BadKind kind;
    Seal seal;
    const char *name;
    const char *expect1, *expect2;   // both must appear in the error (expect2 may be NULL)
} BadCase;

static const BadCase k_bad[] = {
    {BAD_TRUNC_HALF, AS_DAMAGED, "truncated to half", "is truncated: it has", "use an older checkpoint"},
    {BAD_TRUNC_HALF, UNSEALED, "old file truncated to half", "truncated or corrupt", "use an older checkpoint"},
    {BAD_TRUNC_100, AS_DAMAGED, "truncated to 100 bytes", "is truncated: it has 100 bytes", NULL},
    {BAD_EMPTY, AS_DAMAGED, "empty file", "empty (0 bytes)", NULL},
    {BAD_FLIP_DATA, AS_DAMAGED, "flipped byte in a dataset", "checksum mismatch in checkpoint", "use an older"},
    {BAD_FLIP_DATA, UNSEALED, "old file, flipped dataset byte", "checksum mismatch", "'/model/_vq_vae._ema_w'"},
    {BAD_FLIP_HEAP, AS_DAMAGED, "flipped byte in the global heap", "checksum mismatch in checkpoint", NULL},
    {BAD_FLIP_SUPERBLOCK, AS_DAMAGED, "flipped byte in the superblock", "checksum mismatch in checkpoint", NULL},
    {BAD_FLIP_SUPERBLOCK, RESEALED, "superblock damage under a good sum", "truncated or corrupt", "checksum"},
    {BAD_FLIP_HEADER, AS_DAMAGED, "flipped byte in the checksum header", "checksum header", "damaged"},
    {BAD_EDITED, AS_DAMAGED, "edited by HDF5 after it was written", "corrupt (longer than written)", NULL},
    {BAD_SHAPE, AS_DAMAGED, "tensor list with another shape",
     "'/model/_encoder._conv_1.weight' has shape [8, 3, 4, 4], expected [6, 3, 4, 4]", "another model configuration"},
    {BAD_MISSING, RESEALED, "missing dataset", "'/model/_vq_vae._ema_w' is missing", NULL},
    {BAD_MISSING_MOMENT, RESEALED, "missing moment", "'/optim/_encoder._conv_1.bias/exp_avg_sq' is missing", NULL},
    {BAD_EXTRA, RESEALED, "extra dataset", "'/model/_extra.weight'", "strict"},
    {BAD_EXTRA_OPTIM, RESEALED, "moments for a buffer", "'/optim/_vq_vae._ema_w'", "does not have"},
    {BAD_FORMAT, RESEALED, "wrong format attribute", "not a vqvae_dist checkpoint (attribute 'format' is "
                                                     "'tensorflow', expected 'vqvae_dist')", NULL},
    {BAD_NO_FORMAT, RESEALED, "no format attribute", "not a vqvae_dist checkpoint (no 'format'", NULL},
    {BAD_NEWER, RESEALED, "newer version", "format version 2, written by vqvae_dist 9.9.9",
     "use vqvae_dist 9.9.9 or newer"},
    {BAD_NAN, RESEALED, "NaN in a weight", "'/model/_vq_vae._embedding.weight'",
     "non-finite value nan at flat index 5"},
    {BAD_NEG_MOMENT, RESEALED, "negative exp_avg_sq", "'/optim/_vq_vae._embedding.weight/exp_avg_sq'",
     "negative value"},
    {BAD_FLOAT64, RESEALED, "float64 dataset", "'/model/_encoder._conv_1.bias' in", "is not float32"},
    {BAD_NO_CHECKSUM, RESEALED, "dataset without fletcher32", "'/model/_encoder._conv_1.bias' in", "no fletcher32"},
    {BAD_NO_FILE, AS_DAMAGED, "path that does not exist", "No such file or directory", NULL},
    {BAD_NOT_HDF5, AS_DAMAGED, "not an HDF5 file", "is not an HDF5 file", NULL},
};

// Flips a byte of _ema_w's chunk after making sure the chunk really holds the values we wrote.
static int flip_dataset(const char *bad, const Model *md, TestCounts *c) {
    int k = model_find(md, "_vq_vae._ema_w");
    size_t bytes_n = md->size[k] * sizeof(float);
    long long chunk_size = 0, addr = chunk_address(bad, "/model/_vq_vae._ema_w", &chunk_size);
    size_t len;
    unsigned char *bytes = read_bytes(bad, &len);
    int found = addr >= 0 && chunk_size == (long long)(bytes_n + 4) && (size_t)addr + bytes_n <= len &&
                memcmp(bytes + addr, md->values + md->offset[k], bytes_n) == 0;
    free(bytes);
    EXPECT(c, found, "chunk of _ema_w not found where HDF5 says (addr %lld, size %lld)", addr, chunk_size);
    return found ? flip_byte_at(bad, addr + 37) : -1;
}

// Flips a byte of the first string in the global heap (the hang: a part of HDF5's
// metadata without a checksum of its own).
static int flip_heap(const char *bad) {
    size_t len;
    unsigned char *bytes = read_bytes(bad, &len);
    long long at = -1;
    for (size_t i = 0; bytes && at < 0 && i + 4 <= len; i++)
        if (memcmp(bytes + i, "GCOL", 4) == 0) at = (long long)i;
    free(bytes);
    return at < 0 ? -1 : flip_byte_at(bad, at + 10);   // inside the collection's size field
}

// Edits of the file with raw HDF5 (0 on success, -1 otherwise).
static int edit_bad(BadKind kind, const char *bad) {
    switch (kind) {
    case BAD_EDITED:
    case BAD_FORMAT: return set_attr_string(bad, "format", kind == BAD_EDITED ? "vqvae_dist" : "tensorflow");
    case BAD_MISSING: return delete_link(bad, "/model/_vq_vae._ema_w");
    case BAD_MISSING_MOMENT: return delete_link(bad, "/optim/_encoder._conv_1.bias/exp_avg_sq");
    case BAD_EXTRA: return add_extra_dataset(bad, "/model/_extra.weight");
    case BAD_EXTRA_OPTIM: {
        hid_t f = open_rw(bad);
        hid_t g = f >= 0 ? H5Gcreate2(f, "/optim/_vq_vae._ema_w", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (g >= 0) H5Gclose(g);
        if (f >= 0) H5Fclose(f);
        return g >= 0 ? 0 : -1;
    }
    case BAD_NO_FORMAT: {
        hid_t f = open_rw(bad);
        herr_t rc = f >= 0 ? H5Adelete(f, "format") : -1;
        if (f >= 0) H5Fclose(f);
        return rc < 0 ? -1 : 0;
    }
    case BAD_NEWER:
        return set_attr_i64(bad, "version", 2) || set_attr_string(bad, "program_version", "9.9.9") ? -1 : 0;
    case BAD_NAN: return poke_value(bad, "/model/_vq_vae._embedding.weight", 16 * 8, 5, NAN);
    case BAD_NEG_MOMENT: return poke_value(bad, "/optim/_vq_vae._embedding.weight/exp_avg_sq", 16 * 8, 3, -1e-6f);
    case BAD_FLOAT64: return replace_dataset(bad, "/model/_encoder._conv_1.bias", H5T_IEEE_F64LE, 1);
    case BAD_NO_CHECKSUM: return replace_dataset(bad, "/model/_encoder._conv_1.bias", H5T_IEEE_F32LE, 0);
    default: return -1;
    }
}

// Builds the broken file `bad` from the good checkpoint `good`; 0 on success.
static int make_bad(const BadCase *bc, const char *good, const char *bad, const Model *md, TestCounts *c) {
    if (bc->kind == BAD_NO_FILE) return 0;
    if (bc->kind == BAD_NOT_HDF5) {
        const char *text = "step: 1000\nthis is a YAML file, not a checkpoint\n";
        return write_bytes(bad, text, strlen(text));
    }
    if (copy_file(good, bad) != 0 || (bc->seal == UNSEALED && unseal(bad) != 0)) return -1;
    long long size = file_size(bad);
    int rc;
    switch (bc->kind) {
    case BAD_TRUNC_HALF: rc = truncate(bad, size / 2); break;
    case BAD_TRUNC_100: rc = truncate(bad, 100); break;
    case BAD_EMPTY: rc = truncate(bad, 0); break;
    case BAD_FLIP_DATA: rc = flip_dataset(bad, md, c); break;
    case BAD_FLIP_HEAP: rc = flip_heap(bad); break;
    case BAD_FLIP_SUPERBLOCK: rc = flip_byte_at(bad, 512 + 20); break;   // v3 superblock: 48 bytes, checksummed
    case BAD_FLIP_HEADER: rc = flip_byte_at(bad, 20); break;
    case BAD_SHAPE: rc = 0; break;   // the load expects other shapes
    default: rc = edit_bad(bc->kind, bad); break;
    }
    return rc == 0 && bc->seal == RESEALED ? reseal(bad) : rc;
}

static void test_bad_files(TestCounts *c, const char *dir) {
    Model good, other, dst;
    model_init(&good, 8);
    model_init(&other, 6);
    model_init(&dst, 8);
    model_fill_random(&good, 4);
    CheckpointMeta meta = test_meta(500);
    char good_path[512], err[2048];
    snprintf(good_path, sizeof good_path, "%s/good.h5", dir);
    int rc = model_save(good_path, &good, &meta, err, sizeof err);
    EXPECT(c, rc == 0, "save of the good file: %s", err);

    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const BadCase *bc = &k_bad[i];
        char bad[600];
        snprintf(bad, sizeof bad, "%s/bad_%02zu.h5", dir, i);
        int made = make_bad(bc, good_path, bad, &good, c);
        EXPECT(c, made == 0, "%s: could not build the broken file", bc->name);
        if (made != 0) continue;
        Model *target = bc->kind == BAD_SHAPE ? &other : &dst;
        model_fill(target, 7.0f);
        CheckpointMeta got;
        char *config = NULL;
        err[0] = '\0';
        IdMarks marks = id_marks();
        rc = model_load(bad, target, &got, &config, err, sizeof err);
        long long leaked = leaked_ids(marks);
        printf("  %-32s -> %s\n", bc->name, err);
        int has1 = strstr(err, bc->expect1) != NULL, has2 = !bc->expect2 || strstr(err, bc->expect2) != NULL;
        EXPECT(c, rc == -1 && has1 && has2, "%s: rc %d, error '%s' should contain '%s'%s%s", bc->name, rc, err,
               bc->expect1, bc->expect2 ? " and " : "", bc->expect2 ? bc->expect2 : "");
        EXPECT(c, strstr(err, bad) != NULL, "%s: error does not name the file: %s", bc->name, err);
        EXPECT(c, config == NULL && model_all_equal(target, 7.0f), "%s: a failed load changed the state", bc->name);
        EXPECT(c, leaked == 0, "%s: %lld HDF5 handles left open", bc->name, leaked);
        free(config);
    }
    // read_meta and print_info refuse what they cannot read, too.
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad_newer.h5", dir);
    make_bad(&(BadCase){BAD_NEWER, RESEALED, "", "", NULL}, good_path, bad, &good, c);
    CheckpointMeta m;
    rc = checkpoint_read_meta(bad, 0, &m, NULL, err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "format version 2"), "read_meta of a newer file: rc %d: %s", rc, err);
    snprintf(bad, sizeof bad, "%s/bad_flip_info.h5", dir);
    make_bad(&(BadCase){BAD_FLIP_DATA, AS_DAMAGED, "", "", NULL}, good_path, bad, &good, c);
    rc = capture_stdout("/dev/null", checkpoint_print_info, bad, err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "checksum mismatch"), "print_info of a corrupt file: rc %d: %s", rc, err);
    model_free(&good);
    model_free(&other);
    model_free(&dst);
}

// ---- failed saves leave an existing checkpoint alone ----

static void expect_untouched(TestCounts *c, const char *what, int rc, const char *err, const char *path,
                             const char *copy, IdMarks marks) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    printf("  %-32s -> %s\n", what, err);
    EXPECT(c, rc == -1 && err[0] != '\0', "%s: save should fail (rc %d)", what, rc);
    long long leaked = leaked_ids(marks);
    EXPECT(c, leaked == 0, "%s: %lld HDF5 handles left open", what, leaked);
    EXPECT(c, same_bytes(path, copy), "%s: the existing checkpoint changed", what);
    EXPECT(c, !file_exists(tmp), "%s: %s was left behind", what, tmp);
}

// A folder we may not write to. Root may write anywhere, so as root the save runs in a child
// process that has dropped to user nobody (65534).
static void test_readonly_folder(TestCounts *c, const char *dir, const char *sub, const char *path, const char *copy,
                                 const Model *a, const CheckpointMeta *meta) {
    char err[1024] = "";
    int rc;
    chmod(sub, 0555);
    IdMarks marks = id_marks();
    if (geteuid() != 0) {
        err[0] = '\0';
        rc = model_save(path, a, meta, err, sizeof err);
        expect_untouched(c, "read-only folder", rc, err, path, copy, marks);
    } else {
        chmod(dir, 0755);   // mkdtemp made it 0700: let nobody reach the folder
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
            err[0] = '\0';
            int child_rc = model_save(path, a, meta, err, sizeof err);
            printf("  %-32s -> %s\n", "read-only folder (as nobody)", err);
            fflush(stdout);
            _exit(child_rc == -1 && err[0] && leaked_ids(marks) == 0 ? 0 : 1);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        EXPECT(c, WIFEXITED(status) && WEXITSTATUS(status) == 0, "read-only folder: child status %d", status);
        EXPECT(c, same_bytes(path, copy) && !file_exists(tmp), "read-only folder: checkpoint changed or tmp left");
        chmod(dir, 0700);
    }
    chmod(sub, 0755);
}

static void test_failed_saves(TestCounts *c, const char *dir) {
    Model a;
    model_init(&a, 8);
    model_fill_random(&a, 5);
    CheckpointMeta meta = test_meta(700);
    char sub[512], path[600], copy[600], err[1024] = "";
    snprintf(sub, sizeof sub, "%s/failsave", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/ckpt.h5", sub);
    snprintf(copy, sizeof copy, "%s/ckpt_copy.bin", dir);
    int rc = model_save(path, &a, &meta, err, sizeof err);
    EXPECT(c, rc == 0, "first save: %s", err);
    copy_file(path, copy);

    // Fails inside HDF5, after the file was created: a tensor name given twice.
    CkptTensor twice[3 * SAMPLE_ENTRIES + 1];
    memcpy(twice, a.t, (size_t)a.nt * sizeof a.t[0]);
    twice[a.nt] = a.t[2];
    err[0] = '\0';
    IdMarks marks = id_marks();
    rc = checkpoint_save(path, twice, a.nt + 1, &meta, k_config, err, sizeof err);
    expect_untouched(c, "failure inside HDF5", rc, err, path, copy, marks);
    EXPECT(c, strstr(err, "H5Dcreate2(...) failed for '/model/_encoder._conv_1.bias'") && strstr(err, "ckpt_h5.c:"),
           "HDF5 failure message: %s", err);

    // Non-finite values are refused before anything is written.
    float saved = a.values[3];
    a.values[3] = INFINITY;
    err[0] = '\0';
    marks = id_marks();
    rc = model_save(path, &a, &meta, err, sizeof err);
    expect_untouched(c, "infinite value", rc, err, path, copy, marks);
    EXPECT(c, strstr(err, "not writing checkpoint") && strstr(err, "inf") && strstr(err, "'/model/_encoder._conv_1"),
           "non-finite save message: %s", err);
    a.values[3] = saved;

    // A path under a plain file.
    char under[700];
    snprintf(under, sizeof under, "%s/ckpt_copy.bin/ckpt.h5", dir);
    err[0] = '\0';
    marks = id_marks();
    rc = model_save(under, &a, &meta, err, sizeof err);
    printf("  %-32s -> %s\n", "path under a file", err);
    EXPECT(c, rc == -1 && strstr(err, "Not a directory") && strstr(err, under), "save under a file: rc %d: %s", rc,
           err);
    EXPECT(c, leaked_ids(marks) == 0, "save under a file: HDF5 handles left open");

    test_readonly_folder(c, dir, sub, path, copy, &a, &meta);

    // And a save that works replaces it.
    meta.step = 701;
    rc = model_save(path, &a, &meta, err, sizeof err);
    EXPECT(c, rc == 0 && !same_bytes(path, copy), "save over an existing checkpoint: rc %d: %s", rc, err);
    model_free(&a);
}

int main(void) {
    TestCounts c = {0, 0};
    char dir[] = "/tmp/test_io_checkpoint_bad.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("broken checkpoints:\n");
    test_bad_files(&c, dir);
    printf("failed saves:\n");
    test_failed_saves(&c, dir);
    remove_tree(dir);
    return test_finish("test_io_checkpoint_bad", &c);
}
