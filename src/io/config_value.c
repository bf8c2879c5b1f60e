// config_value.c: one key's value as text and back: parsing with range checks and messages that
// say what was expected, and formatting that reads back to the identical value.
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "io/config_internal.h"
#include "io/utf8.h"

// Append printf output at *pos of buf[len] (truncating, always NUL-terminated).
__attribute__((format(printf, 4, 5))) void ck_append(char *buf, size_t len, size_t *pos, const char *fmt, ...) {
    if (*pos >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0) *pos = *pos + (size_t)n < len ? *pos + (size_t)n : len;
}

// Walks an enum's "ema|vq": returns the next choice and its length in *len, or NULL at the end.
const char *ck_next_choice(const char **cursor, int *len) {
    const char *c = *cursor;
    if (!c) return NULL;
    const char *bar = strchr(c, '|');
    *len = bar ? (int)(bar - c) : (int)strlen(c);
    *cursor = bar ? bar + 1 : NULL;
    return c;
}

// "ema|vq" -> "[ema, vq]"
void ck_choices_list(const char *choices, char *buf, size_t len) {
    size_t pos = 0;
    ck_append(buf, len, &pos, "[");
    int n;
    for (const char *cur = choices, *c; (c = ck_next_choice(&cur, &n));)
        ck_append(buf, len, &pos, "%s%.*s", c == choices ? "" : ", ", n, c);
    ck_append(buf, len, &pos, "]");
}

int ck_enum_has(const char *choices, const char *text) {
    int n;
    for (const char *cur = choices, *c; (c = ck_next_choice(&cur, &n));)
        if ((size_t)n == strlen(text) && strncmp(c, text, (size_t)n) == 0) return 1;
    return 0;
}

// Numbers print with the fewest digits that read back to the identical float (6..9 digits) or
// double (6..17), always with a '.' so that YAML 1.1 readers (PyYAML) see a float: 0.001, 300.0,
// 1.0e-05.
static void format_number(double v, int single, char *buf, size_t len) {
    char digits[40];
    for (int p = 6; p <= (single ? 9 : 17); p++) {
        snprintf(digits, sizeof digits, "%.*g", p, v);
        if (single ? strtof(digits, NULL) == (float)v : strtod(digits, NULL) == v) break;
    }
    char *e = strchr(digits, 'e');
    if (strpbrk(digits, ".ni")) snprintf(buf, len, "%s", digits);  // has a point, or is inf/nan
    else if (e) snprintf(buf, len, "%.*s.0%s", (int)(e - digits), digits, e);
    else snprintf(buf, len, "%s.0", digits);
}

static void format_float(float v, char *buf, size_t len) { format_number(v, 1, buf, len); }
static void format_double(double v, char *buf, size_t len) { format_number(v, 0, buf, len); }

static void format_list(const ConfigIntList *list, char *buf, size_t len) {
    size_t pos = 0;
    buf[0] = '\0';
    ck_append(buf, len, &pos, "[");
    for (int i = 0; i < list->count; i++) ck_append(buf, len, &pos, "%s%d", i ? ", " : "", list->values[i]);
    ck_append(buf, len, &pos, "]");
}

void ck_format(const KeySpec *k, const Config *cfg, char *buf, size_t len) {
    const void *p = ck_cfield(cfg, k);
    switch (k->type) {
    case KEY_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case KEY_INT64: snprintf(buf, len, "%" PRId64, *(const int64_t *)p); break;
    case KEY_UINT64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p); break;
    case KEY_FLOAT: format_float(*(const float *)p, buf, len); break;
    case KEY_DOUBLE: format_double(*(const double *)p, buf, len); break;
    case KEY_BOOL: snprintf(buf, len, "%s", *(const int *)p ? "true" : "false"); break;
    case KEY_STRING:
    case KEY_ENUM: snprintf(buf, len, "%.*s", (int)k->size, (const char *)p); break;
    case KEY_INT_LIST: format_list(p, buf, len); break;
    }
}

double ck_numeric(const KeySpec *k, const Config *cfg) {
    const void *p = ck_cfield(cfg, k);
    switch (k->type) {
    case KEY_INT: return *(const int *)p;
    case KEY_INT64: return (double)*(const int64_t *)p;
    case KEY_UINT64: return (double)*(const uint64_t *)p;
    case KEY_FLOAT: return *(const float *)p;
    case KEY_DOUBLE: return *(const double *)p;
    default: return 0;
    }
}

// 0 when v satisfies k's bounds, else -1 with "KEY must be >= 1, got TEXT". Written so NaN fails.
int ck_check_range(const KeySpec *k, double v, const char *text, char *msg, size_t msg_len) {
    if ((k->type == KEY_FLOAT || k->type == KEY_DOUBLE) && !isfinite(v))
        return set_error(msg, msg_len, "%s must be a finite number, got %s", k->key, text);
    const char *op = NULL;
    double bound = 0;
    if ((k->flags & GE_MIN) && !(v >= k->min)) op = ">=", bound = k->min;
    else if ((k->flags & GT_MIN) && !(v > k->min)) op = ">", bound = k->min;
    else if ((k->flags & LE_MAX) && !(v <= k->max)) op = "<=", bound = k->max;
    else if ((k->flags & LT_MAX) && !(v < k->max)) op = "<", bound = k->max;
    if (!op) return 0;
    return set_error(msg, msg_len, "%s must be %s %.10g, got %s", k->key, op, bound, text);
}

// What a key's value looks like, for messages.
const char *ck_expected_kind(const KeySpec *k) {
    switch (k->type) {
    case KEY_FLOAT:
    case KEY_DOUBLE: return "a number";
    case KEY_BOOL: return "true or false";
    case KEY_STRING: return "a string";
    case KEY_ENUM: return "a name";
    case KEY_INT_LIST: return "a list of integers like [16, 32, 64]";
    default: return "an integer";
    }
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

// "'abc'" or "an empty value", for messages; long values are cut.
void ck_quote_got(const char *text, char *buf, size_t len) {
    if (!*text) snprintf(buf, len, "an empty value");
    else snprintf(buf, len, "'%.80s%s'", text, strlen(text) > 80 ? "..." : "");
}

// Numbers: no leading blanks, no trailing junk (strto* would accept " 12" and stop at "12abc").
static int set_integer(void *p, const KeySpec *k, const char *text, const char *got, char *msg, size_t msg_len) {
    char *end = NULL;
    errno = 0;
    if (k->type == KEY_UINT64) {
        unsigned long long v = strtoull(text, &end, 10);
        if (*end || text[0] == '-')
            return set_error(msg, msg_len, "%s must be a non-negative integer, got %s", k->key, got);
        if (errno == ERANGE)
            return set_error(msg, msg_len, "%s must be an integer in [0, %" PRIu64 "], got %s", k->key, UINT64_MAX, got);
        *(uint64_t *)p = v;
        return 0;
    }
    long long v = strtoll(text, &end, 10);
    if (*end) return set_error(msg, msg_len, "%s must be an integer, got %s", k->key, got);
    long long lo = k->type == KEY_INT64 ? INT64_MIN : INT_MIN, hi = k->type == KEY_INT64 ? INT64_MAX : INT_MAX;
    if (errno == ERANGE || v < lo || v > hi) {  // too big for the field: report the key's bound if it has one
        if (ck_check_range(k, text[0] == '-' ? -HUGE_VAL : HUGE_VAL, text, msg, msg_len)) return -1;
        return set_error(msg, msg_len, "%s must be an integer in [%lld, %lld], got %s", k->key, lo, hi, got);
    }
    if (ck_check_range(k, (double)v, text, msg, msg_len)) return -1;
    if (k->type == KEY_INT64) *(int64_t *)p = v;
    else *(int *)p = (int)v;
    return 0;
}

static int set_real(void *p, const KeySpec *k, const char *text, const char *got, char *msg, size_t msg_len) {
    char *end = NULL;
    double v = k->type == KEY_FLOAT ? strtof(text, &end) : strtod(text, &end);
    if (*end) return set_error(msg, msg_len, "%s must be a number (like 0.25 or 1e-3), got %s", k->key, got);
    if (!isfinite(v))
        return set_error(msg, msg_len, "%s must be a finite number%s, got %s", k->key,
                         k->type == KEY_FLOAT ? " that fits a float" : "", got);
    if (ck_check_range(k, v, text, msg, msg_len)) return -1;
    if (k->type == KEY_FLOAT) *(float *)p = (float)v;
    else *(double *)p = v;
    return 0;
}

static int set_enum(void *p, const KeySpec *k, const char *text, const char *got, char *msg, size_t msg_len,
                    char *hint, size_t hint_len) {
    if (!ck_enum_has(k->choices, text)) {
        char list[200];
        ck_choices_list(k->choices, list, sizeof list);
        // Suggest the closest choice when it is plausibly a typo ("emma") or a prefix ("cifar").
        const char *best = NULL;
        int best_d = 1 << 30, best_len = 0, n;
        for (const char *cur = k->choices, *c; (c = ck_next_choice(&cur, &n));) {
            char one[CONFIG_NAME_MAX];
            snprintf(one, sizeof one, "%.*s", n, c);
            int d = edit_distance(text, one);
            if (*text && strncasecmp(one, text, strlen(text)) == 0) d = 1;
            if (d < best_d) best_d = d, best = c, best_len = n;
        }
        if (best && best_d <= 2 && hint_len) snprintf(hint, hint_len, "; did you mean '%.*s'?", best_len, best);
        return set_error(msg, msg_len, "%s must be one of %s, got %s", k->key, list, got);
    }
    memset(p, 0, k->size);
    memcpy(p, text, strlen(text));  // choices are shorter than CONFIG_NAME_MAX
    return 0;
}

static int set_string(void *p, const KeySpec *k, const char *text, const char *got, char *msg, size_t msg_len) {
    size_t n = strlen(text);
    if (n >= k->size)
        return set_error(msg, msg_len, "%s is too long (%zu bytes, at most %zu), got %s", k->key, n, k->size - 1, got);
    long bad = utf8_invalid_at(text);   // the config is stored as YAML, which is UTF-8
    if (bad >= 0)
        return set_error(msg, msg_len, "%s must be UTF-8 text; byte %ld (0x%02x) is not, got %s", k->key, bad,
                         (unsigned char)text[bad], got);
    memset(p, 0, k->size);  // zero the tail so equal configs compare equal byte for byte
    memcpy(p, text, n);
    return 0;
}

// "[16, 32, 64]", "16,32,64" or "16": each element an integer within the key's bounds.
static int set_int_list(void *p, const KeySpec *k, const char *text, const char *got, char *msg, size_t msg_len) {
    ConfigIntList list;
    memset(&list, 0, sizeof list);
    const char *s = text;
    while (isspace((unsigned char)*s)) s++;
    int bracket = *s == '[';
    if (bracket) s++;
    for (;;) {
        while (isspace((unsigned char)*s)) s++;
        if (bracket && *s == ']' && list.count == 0) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno == ERANGE || v < INT_MIN || v > INT_MAX)
            return set_error(msg, msg_len, "%s must be %s, got %s", k->key, ck_expected_kind(k), got);
        if (list.count == CONFIG_LIST_MAX)
            return set_error(msg, msg_len, "%s has more than %d elements, got %s", k->key, CONFIG_LIST_MAX, got);
        char element[32];
        snprintf(element, sizeof element, "%ld", v);
        if (ck_check_range(k, (double)v, element, msg, msg_len)) return -1;
        list.values[list.count++] = (int)v;
        s = end;
        while (isspace((unsigned char)*s)) s++;
        if (*s != ',') break;
        s++;
    }
    if (bracket && *s == ']') s++, bracket = 0;
    while (isspace((unsigned char)*s)) s++;
    if (*s || bracket || list.count == 0)
        return set_error(msg, msg_len, "%s must be %s (at least one element), got %s", k->key, ck_expected_kind(k),
                         got);
    memcpy(p, &list, sizeof list);
    return 0;
}

int ck_set_value(Config *cfg, const KeySpec *k, const char *text, char *msg, size_t msg_len, char *hint,
                 size_t hint_len) {
    char got[100];
    ck_quote_got(text, got, sizeof got);
    if (hint_len) hint[0] = '\0';
    void *p = ck_field(cfg, k);
    int numeric = k->type == KEY_INT || k->type == KEY_INT64 || k->type == KEY_UINT64 || k->type == KEY_FLOAT ||
                  k->type == KEY_DOUBLE;
    if (numeric && (!*text || isspace((unsigned char)text[0])))
        return set_error(msg, msg_len, "%s must be %s, got %s", k->key, ck_expected_kind(k), got);
    switch (k->type) {
    case KEY_INT:
    case KEY_INT64:
    case KEY_UINT64: return set_integer(p, k, text, got, msg, msg_len);
    case KEY_FLOAT:
    case KEY_DOUBLE: return set_real(p, k, text, got, msg, msg_len);
    case KEY_BOOL: {
        int v;
        if (parse_bool(text, &v))
            return set_error(msg, msg_len, "%s must be true or false (or yes/no, on/off, 1/0), got %s", k->key, got);
        *(int *)p = v;
        return 0;
    }
    case KEY_ENUM: return set_enum(p, k, text, got, msg, msg_len, hint, hint_len);
    case KEY_STRING: return set_string(p, k, text, got, msg, msg_len);
    case KEY_INT_LIST: return set_int_list(p, k, text, got, msg, msg_len);
    }
    return set_error(msg, msg_len, "%s: unknown key type", k->key);
}
