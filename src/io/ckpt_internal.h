// ckpt_internal.h: what the checkpoint files of src/io share (not part of the io interface).
//   ckpt_h5.c         HDF5 errors, attributes, named float32 datasets, strict group members
//   ckpt_file.c       one checkpoint file: the metadata table, save, load, read_meta
//   ckpt_image.c      HDF5 files built and parsed in memory
//   ckpt_integrity.c  values and checksums, whole files read and written atomically
//   ckpt_dir.c        a folder of checkpoints: keep N, `latest`, resume candidates
//   ckpt_info.c       `vqvae_dist info`
#pragma once
#include <hdf5.h>
#include <limits.h>
#include <stddef.h>

#include "checkpoint.h"

#define CKPT_FORMAT_NAME "vqvae_dist"
#ifndef VQ_VERSION
#define VQ_VERSION "unknown"
#endif

enum { CKPT_PATH_MAX = PATH_MAX + 16 };   // room for ".tmp"
// The first bytes of the file: the user block HDF5 leaves alone, holding our checksum header
// (ckpt_integrity.c); HDF5's own data starts after it.
enum { CKPT_USERBLOCK = 512 };
#define CKPT_HDF5_SIGNATURE "\x89HDF\r\n\x1a\n"
#define CKPT_HEADER_MAGIC "vqvae_dist checkpoint\n"

// The file an operation is about and where its error message goes. Every message names the file.
typedef struct {
    const char *path;
    char *err;
    size_t err_len;
} CkptCtx;

// ---- HDF5 errors and handles (ckpt_h5.c) ----

// HDF5 prints its whole error stack to stderr by default. Each entry point silences that while it
// works and puts the innermost reason into its own message instead (VQ_HDF5_ERRORS=1: both).
typedef struct {
    H5E_auto2_t func;
    void *data;
} CkptQuiet;
CkptQuiet ckpt_quiet_begin(void);
void ckpt_quiet_end(CkptQuiet q);

void ckpt_h5_innermost(char *buf, size_t len);   // HDF5's innermost reason, "" when none
void ckpt_h5_fail(const CkptCtx *cx, const char *expr, const char *object, const char *src, int line);
// Close any kind of handle; negative ids (never opened) are skipped, so a cleanup can close all.
void ckpt_h5_close(hid_t id);

// Needs a `cleanup:` label in the enclosing function. For calls returning herr_t, htri_t, hid_t
// or ssize_t (all negative on failure).
#define TRY_H5(cx, expr, object)                                              \
    do {                                                                      \
        if ((expr) < 0) {                                                     \
            ckpt_h5_fail((cx), #expr, (object), __FILE__, __LINE__);          \
            goto cleanup;                                                     \
        }                                                                     \
    } while (0)

// ---- attributes (ckpt_h5.c) ----

typedef enum { CKPT_ATTR_I64, CKPT_ATTR_U64, CKPT_ATTR_INT, CKPT_ATTR_F32, CKPT_ATTR_F64, CKPT_ATTR_TEXT } CkptAttrType;

// value points to the C type of `type` (int64_t, uint64_t, int, float, double, or a char array
// for TEXT). Strings are stored as variable-length UTF-8 (h5py 3 reads them as str).
int ckpt_attr_write(hid_t loc, const char *loc_name, const char *name, CkptAttrType type, const void *value,
                    const CkptCtx *cx);
// 1 when loc has attribute name, 0 when not, -1 on error.
int ckpt_attr_exists(hid_t loc, const char *loc_name, const char *name, const CkptCtx *cx);
// Reads a numeric attribute into out (TEXT: into a char array of out_size bytes, refusing a
// longer string). Integer types must be stored as integers.
int ckpt_attr_read(hid_t loc, const char *loc_name, const char *name, CkptAttrType type, void *out, size_t out_size,
                   const CkptCtx *cx);
// Reads a string attribute (variable- or fixed-length) into a malloc'd string.
int ckpt_attr_read_string(hid_t loc, const char *loc_name, const char *name, char **out, const CkptCtx *cx);

// ---- named float32 tensors (ckpt_h5.c) ----

int64_t ckpt_tensor_count(const CkptTensor *t);
void ckpt_format_shape(char *buf, size_t len, int ndim, const hsize_t *dims);
// One dataset, chunked as `chunk`, with fletcher32 (after gzip when gzip_level > 0, so the checksum
// covers the stored bytes). times 0 leaves out the object times (the same data, the same bytes).
// Its parent groups must exist; errors name `object`.
typedef struct {
    const char *name, *object;
    hid_t file_type, mem_type;
    int ndim;
    const hsize_t *dims, *chunk;
    int gzip_level, times;
    const void *data;
} CkptDataset;
int ckpt_h5_dataset_write(hid_t f, const CkptDataset *d, const CkptCtx *cx);
// Writes t under f as a chunked float32 dataset with fletcher32, creating its parent groups
// (which track creation order, so listings follow the caller's order).
int ckpt_dataset_write(hid_t f, const CkptTensor *t, const CkptCtx *cx);
// Reads dataset t->name of f into out (ckpt_tensor_count(t) floats): it must exist, be float32 of
// exactly t's shape, carry fletcher32 (so HDF5 verifies it), and pass ckpt_check_values.
int ckpt_dataset_read(hid_t f, const CkptTensor *t, float *out, const CkptCtx *cx);
// Strict loading: every member of a group that holds one of the wanted tensors must itself be
// wanted (a tensor, or a group on the way to one). wanted[i] = 0 skips tensors[i].
int ckpt_check_members(hid_t f, const CkptTensor *tensors, const int *wanted, int count, const CkptCtx *cx);

// ---- integrity (ckpt_integrity.c) ----

// Refuses a tensor holding NaN or Inf before anything is written (a diverged state must not
// become `latest` and push the good checkpoints out of `keep`).
int ckpt_check_finite(const CkptTensor *tensors, int count, const CkptCtx *cx);
// After a read: every value finite (and >= 0 when non_negative); the message names the dataset.
int ckpt_check_values(const char *full_name, const float *x, int64_t n, int non_negative, const CkptCtx *cx);
// 1 when the dataset's creation property list has the fletcher32 filter.
int ckpt_has_fletcher32(hid_t dcpl);
// Writes the checksum header into image[0, CKPT_USERBLOCK): CRC-32 of the bytes after it and the
// file's length.
void ckpt_seal(unsigned char *image, size_t len);
// Checks the header of a whole file in memory before HDF5 parses it. Returns 1 when the checksum
// matched, 0 for a file without one (written before checksums, or by another program), -1 with
// an error naming the file when it is damaged, truncated, or not HDF5 at all.
int ckpt_verify(const unsigned char *bytes, size_t len, const CkptCtx *cx);
// The whole file in memory (malloc'd), with clear messages for a missing file, a folder, an empty
// file. NULL on error.
unsigned char *ckpt_read_file(const CkptCtx *cx, size_t *len_out);
// Writes bytes to path atomically, after checking the folder has room for them: the message of a
// full disk says how much the file needs and how much is free.
int ckpt_write_file(const char *path, const unsigned char *bytes, size_t len, char *err, size_t err_len);
// ckpt_write_file of a string.
int ckpt_write_text_atomic(const char *path, const char *text, char *err, size_t err_len);

// ---- HDF5 files in memory (ckpt_image.c) ----

typedef struct {
    void *mem;     // the core driver's buffer, ours once the file is closed
    size_t size;   // its size
    size_t len;    // the file's length (<= size), set by ckpt_image_finish
    int closed;
} CkptImage;

// A new, empty checkpoint file in memory (v1.10 format, with the user block).
hid_t ckpt_image_create(CkptImage *im, const CkptCtx *cx);
// Closes f and keeps its bytes in im (im->mem, im->len); ckpt_image_free releases them.
int ckpt_image_finish(hid_t f, CkptImage *im, const CkptCtx *cx);
void ckpt_image_free(CkptImage *im);
// Opens bytes (a whole file, already verified) read-only.
hid_t ckpt_image_open(const unsigned char *bytes, size_t len, const CkptCtx *cx);

// ---- one file (ckpt_file.c) ----

// Reads path into memory, verifies its whole-file checksum and opens it with HDF5.
// *verified: 1 = the checksum matched, 0 = the file has none.
hid_t ckpt_open_unchecked(const CkptCtx *cx, int *verified);
// 'format' is vqvae_dist and 'version' one this program reads (else an error naming the version
// and the program that wrote it).
int ckpt_check_format(hid_t f, const CkptCtx *cx);
// Both, and a warning on stderr for a file without a whole-file checksum.
hid_t ckpt_open(const CkptCtx *cx);
// What ckpt_read_meta_attrs does with /optim's attributes.
enum { CKPT_OPTIM_SKIP, CKPT_OPTIM_REQUIRED, CKPT_OPTIM_IF_PRESENT };
// Root attributes and the config (and /optim's, per optim_mode); *config_out is malloc'd.
int ckpt_read_meta_attrs(hid_t f, int optim_mode, CheckpointMeta *meta, char **config_out, const CkptCtx *cx);
