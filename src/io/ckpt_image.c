// ckpt_image.c: checkpoints are built and parsed as HDF5 files in memory (the core driver without
// a backing store). HDF5 never touches the disk: the bytes are written and read by
// ckpt_integrity.c, which checksums the whole file first. So a full disk is a plain write error
// (HDF5 never holds a half-flushed file, whose close at exit would crash), and HDF5 parses only
// bytes whose checksum matched.
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "ckpt_internal.h"

// The core driver grows its buffer in steps of this many bytes.
enum { IMAGE_INCREMENT = 1 << 20 };
// The name only labels an image: without a backing store the core driver reads and writes
// nothing on disk (on open it still tries the name, and ignores a file that exists), so use a
// name that names no file.
#define IMAGE_NAME "(vqvae_dist checkpoint in memory)"

// The core driver's buffer is ours (file image callbacks): at close we keep it instead of
// letting the driver free it. (H5Fget_file_image would copy it before close, but HDF5 1.10.8
// returns a v3 superblock whose checksum does not match in that copy.)
static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    CkptImage *im = udata;
    void *p = malloc(size);
    if (p) {
        im->mem = p;
        im->size = size;
    }
    return p;
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    CkptImage *im = udata;
    void *p = realloc(ptr, size);
    if (p) {
        im->mem = p;
        im->size = size;
    }
    return p;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    CkptImage *im = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && ptr == im->mem) {
        im->closed = 1;   // the file is complete: keep its bytes
        return 0;
    }
    free(ptr);
    return 0;
}

static void *udata_copy(void *udata) { return udata; }
static herr_t udata_free(void *udata) {
    (void)udata;
    return 0;
}

hid_t ckpt_image_create(CkptImage *im, const CkptCtx *cx) {
    memset(im, 0, sizeof *im);
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    H5FD_file_image_callbacks_t callbacks = {image_malloc, image_memcpy, image_realloc, image_free,
                                             udata_copy,   udata_free,   im};
    TRY_H5(cx, fapl = H5Pcreate(H5P_FILE_ACCESS), "/");
    TRY_H5(cx, H5Pset_fapl_core(fapl, IMAGE_INCREMENT, 0), "/");
    TRY_H5(cx, H5Pset_file_image_callbacks(fapl, &callbacks), "/");
    // v1.10 object headers and superblock carry checksums; h5py >= 2.7 (HDF5 1.10) reads them.
    TRY_H5(cx, H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), "/");
    TRY_H5(cx, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "/");   // close really closes
    TRY_H5(cx, fcpl = H5Pcreate(H5P_FILE_CREATE), "/");
    TRY_H5(cx, H5Pset_userblock(fcpl, CKPT_USERBLOCK), "/");   // room for the checksum header
    // The root group records no times: a file's bytes depend on its contents only (codes files).
    TRY_H5(cx, H5Pset_obj_track_times(fcpl, 0), "/");
    TRY_H5(cx, f = H5Fcreate(IMAGE_NAME, H5F_ACC_TRUNC, fcpl, fapl), "/");
cleanup:
    ckpt_h5_close(fcpl);
    ckpt_h5_close(fapl);
    return f;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int ckpt_image_finish(hid_t f, CkptImage *im, const CkptCtx *cx) {
    if (H5Fclose(f) < 0 || !im->closed) {
        ckpt_h5_fail(cx, "H5Fclose", "/", __FILE__, __LINE__);
        if (im->closed) ckpt_image_free(im);
        return -1;
    }
    // The buffer is rounded up to the increment; the file ends where the superblock says (its
    // end-of-file address counts from the start of the file, user block included).
    const unsigned char *sb = (const unsigned char *)im->mem + CKPT_USERBLOCK;
    uint64_t eof = im->size >= CKPT_USERBLOCK + 48 ? le64(sb + 28) : 0;
    if (memcmp(sb, CKPT_HDF5_SIGNATURE, 8) != 0 || sb[8] != 3 || eof < CKPT_USERBLOCK + 48 || eof > im->size) {
        ckpt_image_free(im);
        return set_error(cx->err, cx->err_len, "internal: the HDF5 image of %s does not end where its superblock "
                         "says (end %llu of %zu bytes)", cx->path, (unsigned long long)eof, im->size);
    }
    im->len = (size_t)eof;
    return 0;
}

void ckpt_image_free(CkptImage *im) {
    free(im->mem);
    memset(im, 0, sizeof *im);
}

hid_t ckpt_image_open(const unsigned char *bytes, size_t len, const CkptCtx *cx) {
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    TRY_H5(cx, fapl = H5Pcreate(H5P_FILE_ACCESS), "/");
    TRY_H5(cx, H5Pset_fapl_core(fapl, IMAGE_INCREMENT, 0), "/");
    TRY_H5(cx, H5Pset_file_image(fapl, (void *)bytes, len), "/");   // copied into the property list
    TRY_H5(cx, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "/");
    if ((f = H5Fopen(IMAGE_NAME, H5F_ACC_RDONLY, fapl)) < 0) {
        char inner[256];
        ckpt_h5_innermost(inner, sizeof inner);
        set_error(cx->err, cx->err_len, "cannot open checkpoint '%s' (HDF5: %s): the file is truncated or corrupt; "
                  "use an older checkpoint", cx->path,
                  inner[0] ? inner : "unknown error");
    }
cleanup:
    ckpt_h5_close(fapl);
    return f;
}
