// test_io_config_list.c: integer-list keys (model.channels, model.block_out_channels): the YAML
// flow and block forms, overrides with and without brackets, the printed form reading back, and
// bad lists with the message each must give.
#include <string.h>

#include "io/config.h"
#include "test_util.h"

enum { ERR_LEN = 2048 };

static void expect_list(TestCounts *c, const ConfigIntList *l, const int *want, int n, const char *what) {
    int same = l->count == n;
    for (int i = 0; same && i < n; i++) same = l->values[i] == want[i];
    EXPECT(c, same, "%s: got %d elements (first %d), want %d", what, l->count, l->count ? l->values[0] : 0, n);
}

static void test_forms(TestCounts *c) {
    char err[ERR_LEN] = "";
    Config cfg;
    config_defaults(&cfg);
    const int def_small[] = {16, 32, 64}, def_gn[] = {64, 128};
    expect_list(c, &cfg.channels, def_small, 3, "default model.channels");
    expect_list(c, &cfg.block_out_channels, def_gn, 2, "default model.block_out_channels");

    const char *flow = "model:\n  channels: [8, 16, 24]\n  block_out_channels:\n    - 32\n    - 64\n    - 96\n";
    EXPECT(c, config_load_string(&cfg, flow, "flow", err, sizeof err) == 0, "flow and block lists: %s", err);
    const int want_a[] = {8, 16, 24}, want_b[] = {32, 64, 96};
    expect_list(c, &cfg.channels, want_a, 3, "flow list");
    expect_list(c, &cfg.block_out_channels, want_b, 3, "block list");

    const char *overrides[] = {"model.channels=4,5", "model.channels=[4, 5]", "model.channels= [ 4 ,5 ] "};
    for (int i = 0; i < 3; i++) {
        config_defaults(&cfg);
        EXPECT(c, config_apply_override(&cfg, overrides[i], err, sizeof err) == 0, "%s: %s", overrides[i], err);
        const int want[] = {4, 5};
        expect_list(c, &cfg.channels, want, 2, overrides[i]);
    }
    char *yaml = config_to_yaml(&cfg);
    EXPECT(c, strstr(yaml, "  channels: [4, 5]\n") != NULL, "printed form:\n%s", yaml);
    Config back;
    EXPECT(c, config_load_string(&back, yaml, "printed", err, sizeof err) == 0, "reading the printed list: %s", err);
    EXPECT(c, memcmp(&back, &cfg, sizeof cfg) == 0, "the printed config does not read back to the same Config");
    free(yaml);
}

static void test_bad_lists(TestCounts *c) {
    const struct {
        const char *text, *want;
    } cases[] = {
        {"model.channels=", "list of integers"},
        {"model.channels=[]", "at least one element"},
        {"model.channels=[8, x]", "list of integers"},
        {"model.channels=8,,16", "list of integers"},
        {"model.channels=[8, 16", "at least one element"},
        {"model.channels=0,8", "model.channels must be >= 1, got 0"},
        {"model.channels=8,5000", "model.channels must be <= 4096, got 5000"},
        {"model.channels=1,2,3,4,5,6,7,8,9", "more than 8 elements"},
        {"model.channels=99999999999", "list of integers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config cfg, before;
        config_defaults(&cfg);
        before = cfg;
        char err[ERR_LEN] = "";
        int rc = config_apply_override(&cfg, cases[i].text, err, sizeof err);
        EXPECT(c, rc == -1 && strstr(err, cases[i].want), "%s: rc %d, error \"%s\" lacks \"%s\"", cases[i].text, rc,
               err, cases[i].want);
        EXPECT(c, memcmp(&cfg, &before, sizeof cfg) == 0, "%s: a refused list changed the config", cases[i].text);
    }
    const char *nested = "model:\n  channels: [8, [16]]\n";
    Config cfg;
    config_defaults(&cfg);
    char err[ERR_LEN] = "";
    int rc = config_load_string(&cfg, nested, "nested.yaml", err, sizeof err);
    EXPECT(c, rc == -1 && strstr(err, "element 2 is a list") && strstr(err, "nested.yaml line 2"),
           "nested list: rc %d, \"%s\"", rc, err);
}

int main(void) {
    TestCounts c = {0, 0};
    test_forms(&c);
    test_bad_lists(&c);
    return test_finish("test_io_config_list", &c);
}
