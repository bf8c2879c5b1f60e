// fuzz_codes.c: the codes file reader (codes_file_read, what `decode` reads). Codes files are plain
// HDF5 without the checkpoint's checksum, and HDF5 1.10.8's own parser crashes on some damaged
// files (docs/FUZZING.md), so the input is not the file's bytes: it is a recipe that this harness
// turns into a well-formed HDF5 file through HDF5's writing API, one whose contents are anything
// (attributes present or missing, of the wrong type or value; /codes or /mean of any rank, any
// element type, dims up to overflowing, values out of range; labels of another length). That
// fuzzes what is ours: the reader's checks and its sizes. Whatever the file, the reader returns
// an error with a message and a zeroed struct, or a struct whose arrays hold what it claims.
#include <hdf5.h>

#include "fuzz.h"
#include "io/codes_file.h"

// The recipe, read front to back; an exhausted input reads as zeros.
typedef struct {
    const uint8_t *p;
    size_t n;
} Recipe;

static unsigned take(Recipe *r) {
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

enum {
    HAS_FORMAT = 1, FORMAT_WRONG = 2, VERSION_WRONG = 4, VAE = 8, LABELS = 16, HAS_K = 32, DROP_ATTR = 64,
    STEP_AS_TEXT = 128
};
// Dims a byte can ask for: small ones, and ones whose products overflow or exceed any memory.
static const hsize_t DIMS[8] = {0, 1, 2, 3, 7, 1ull << 16, 1ull << 40, 1ull << 62};
static const char *const ATTRS[] = {"checkpoint", "config", "split", "model_type", "step", "image_channels",
                                    "image_height", "image_width"};

static void attr_text(hid_t f, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    H5Tset_size(type, strlen(value) + 1);
    hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, value);
    H5Aclose(a), H5Sclose(space), H5Tclose(type);
}

static void attr_i64(hid_t f, const char *name, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &value);
    H5Aclose(a), H5Sclose(space);
}

static void write_attrs(hid_t f, unsigned flags, Recipe *r) {
    if (flags & HAS_FORMAT) attr_text(f, "format", flags & FORMAT_WRONG ? "vqvae_dist checkpoint" : CODES_FORMAT_NAME);
    attr_i64(f, "version", flags & VERSION_WRONG ? (int64_t)take(r) - 128 : CODES_FORMAT_VERSION);
    unsigned drop = flags & DROP_ATTR ? take(r) % 8 : 8;
    for (unsigned i = 0; i < 8; i++) {
        if (i == drop) continue;
        const char *name = ATTRS[i];
        if (i == 3) attr_text(f, name, flags & VAE ? "vae" : take(r) & 1 ? "vqvae" : "gan");
        else if (i < 3) attr_text(f, name, i == 2 ? "test" : "x");
        else if (i == 4 && (flags & STEP_AS_TEXT)) attr_text(f, name, "12");
        else attr_i64(f, name, (int64_t)(int8_t)take(r));
    }
    if (flags & HAS_K) attr_i64(f, "num_embeddings", (int64_t)take(r) - 8);
}

// One dataset of rank and element type from the recipe. Small ones are written from the recipe's
// bytes; large ones are chunked and left unwritten (HDF5 reads them as fill values, the file stays small).
static void write_array(hid_t f, const char *name, int rank, Recipe *r, hsize_t *dims) {
    unsigned t = take(r) % 4;
    hid_t type = t == 0 ? H5T_NATIVE_UINT8 : t == 1 ? H5T_NATIVE_INT16 : t == 2 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT;
    hsize_t chunk[5];
    double count = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = DIMS[take(r) % 8];
        chunk[i] = 1;
        count *= (double)dims[i];
    }
    hid_t space = H5Screate_simple(rank, dims, NULL), plist = H5Pcreate(H5P_DATASET_CREATE);
    int large = count > 4096;
    if (large) H5Pset_chunk(plist, rank, chunk);
    hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    if (!large && count > 0) {
        int32_t *v = malloc((size_t)count * sizeof *v);
        for (size_t i = 0; i < (size_t)count; i++) v[i] = (int32_t)take(r) - 16;
        H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        free(v);
    }
    H5Dclose(d), H5Pclose(plist), H5Sclose(space);
}

// Builds the file; main: the dims of /codes or /mean as written.
static void build_file(const char *path, const uint8_t *data, size_t size, hsize_t main[5]) {
    Recipe r = {data, size};
    unsigned flags = take(&r), ranks = take(&r);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_attrs(f, flags, &r);
    // The main array: /codes (rank 4) or /mean (rank 2) as docs/CODES.md says, or another rank.
    int rank = (int)(ranks % 6), want = flags & VAE ? 2 : 4;
    hsize_t label_dims[5];
    write_array(f, flags & VAE ? "mean" : "codes", ranks & 8 ? rank : want, &r, main);
    if (flags & LABELS) write_array(f, "labels", ranks & 16 ? 1 + (int)(ranks >> 5) % 2 : 1, &r, label_dims);
    H5Fclose(f);
}

void fuzz_make_seeds(const char *dir) {
    // The recipe's order: flags, ranks, the attributes' bytes (model_type unless VAE, step, channels,
    // height, width, K + 8 when HAS_K), then per array its type (0 uint8, 2 int32, 3 float), its
    // dims (indices into DIMS) and, when small, its values + 16.
    // A VQ file: K 16, 2 x 2 x 2 x 1 int32 codes 0..7, 2 labels.
    uint8_t vq[] = {HAS_FORMAT | LABELS | HAS_K, 0, 1, 9, 1, 28, 28, 24, 2, 2, 2, 2, 1,
                    16, 17, 18, 19, 20, 21, 22, 23, 0, 2, 19, 21};
    fuzz_seed(dir, "vq", vq, sizeof vq);
    // A VAE file: /mean 2 x 7 floats, 2 labels.
    uint8_t vae[] = {HAS_FORMAT | VAE | LABELS, 0, 9, 1, 28, 28, 3, 2, 4, 20, 21, 22, 23, 24, 25, 26,
                     27, 28, 29, 30, 31, 32, 33, 0, 2, 17, 18};
    fuzz_seed(dir, "vae", vae, sizeof vae);
    // /codes of 2^62 x 2^16 x 2^40 x 1: the sizes overflow.
    uint8_t huge[] = {HAS_FORMAT | HAS_K, 0, 1, 9, 1, 28, 28, 24, 2, 7, 5, 6, 1};
    fuzz_seed(dir, "huge", huge, sizeof huge);
}

// The struct must report the file's dims, and every array value it claims must be readable (ASan
// checks the bounds).
static void check_file(const CodesFile *cf, const hsize_t *dims) {
    int vae = cf->model_type && strcmp(cf->model_type, "vae") == 0;
    int ok = cf->checkpoint && cf->config && cf->split && cf->model_type && cf->count >= 0 &&
             (vae ? cf->mean != NULL && cf->latent_size >= 0
                  : cf->codes != NULL && cf->height >= 0 && cf->width >= 0 && cf->groups >= 0);
    if (!ok) {
        fprintf(stderr, "codes_file_read succeeded with a struct that is missing parts (count %lld)\n",
                (long long)cf->count);
        abort();
    }
    int64_t got[4] = {cf->count, vae ? cf->latent_size : cf->height, cf->width, cf->groups};
    for (int i = 0; i < (vae ? 2 : 4); i++)
        if ((hsize_t)got[i] != dims[i]) {
            fprintf(stderr, "codes_file_read reports dim %d as %lld, the file has %llu\n", i, (long long)got[i],
                    (unsigned long long)dims[i]);
            abort();
        }
    double sum = 0, claimed = vae ? (double)cf->count * cf->latent_size
                                  : (double)cf->count * cf->height * cf->width * cf->groups;
    size_t n = vae ? (size_t)cf->count * (size_t)cf->latent_size
                   : (size_t)cf->count * (size_t)cf->height * (size_t)cf->width * (size_t)cf->groups;
    if ((double)n != claimed) {   // the sizes wrapped: the arrays cannot hold what the struct claims
        fprintf(stderr, "codes_file_read succeeded with %lld images whose size wraps (%g values)\n",
                (long long)cf->count, claimed);
        abort();
    }
    for (size_t i = 0; i < n; i++) sum += vae ? cf->mean[i] : cf->codes[i];
    for (int64_t i = 0; cf->labels && i < cf->count; i++) sum += cf->labels[i];
    if (sum == 1e300) fprintf(stderr, "(sum %g)\n", sum);   // keeps the reads
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   // the recipe's own HDF5 calls may fail quietly
    const char *path = fuzz_scratch("input.codes.h5");
    hsize_t dims[5] = {0, 0, 0, 0, 0};
    build_file(path, data, size, dims);
    CodesFile cf;
    char err[2048] = "";
    int rc = codes_file_read(path, &cf, err, sizeof err);
    if (getenv("VQ_FUZZ_VERBOSE"))   // what the reader made of the input (docs/FUZZING.md)
        fprintf(stderr, rc == 0 ? "read: %s, %lld images\n" : "refused: %s\n", rc == 0 ? cf.model_type : err,
                (long long)cf.count);
    if (rc == 0) {
        check_file(&cf, dims);
        codes_file_free(&cf);
        return 0;
    }
    static const CodesFile zero;
    if (err[0] == '\0' || memcmp(&cf, &zero, sizeof cf) != 0) {
        fprintf(stderr, "codes_file_read failed without a message or left the struct set (err '%s')\n", err);
        abort();
    }
    return 0;
}
