// config_fixture.h: helpers shared by the config tests (test_io_config*.c).
#pragma once
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "test_util.h"

enum { ERR_LEN = 2048, MAX_KEYS = 128 };

static inline void expect_error(TestCounts *c, int rc, const char *err, const char *want1, const char *want2,
                         const char *what) {
    EXPECT(c, rc == -1, "%s: expected an error, got rc %d", what, rc);
    EXPECT(c, strstr(err, want1) != NULL, "%s: error \"%s\" lacks \"%s\"", what, err, want1);
    if (want2) EXPECT(c, strstr(err, want2) != NULL, "%s: error \"%s\" lacks \"%s\"", what, err, want2);
}

static inline void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    fputs(text, f);
    CHECK(fclose(f) == 0, "cannot write %s", path);
}
