// config_yaml.c: a config as YAML text (libyaml): the strict loader (one event at a time, every
// error naming the file, line and key) and the printer whose output reads back to the same Config.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/common.h"
#include "io/config_internal.h"
#include "io/utf8.h"

// The YAML walk: one event at a time, so at most one event is alive and errors can return
// straight away (load_string frees it).
typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int have_event;
    const char *source;         // file name for messages
    const char *text;           // the YAML text (to spot tabs at an error)
    Config *cfg;
    int key_line[CONFIG_MAX_KEYS];     // line where each key was set (0 = not yet): duplicates
    int section_line[CONFIG_MAX_KEYS]; // indexed by the section's first key
    char *err;
    size_t err_len;
} Loader;

static int line_of(const Loader *L) { return (int)L->event.start_mark.line + 1; }

static int next_event(Loader *L) {
    if (L->have_event) yaml_event_delete(&L->event);
    L->have_event = 0;
    if (yaml_parser_parse(&L->parser, &L->event)) {
        L->have_event = 1;
        return 0;
    }
    const yaml_parser_t *p = &L->parser;
    if (p->error == YAML_MEMORY_ERROR) return set_error(L->err, L->err_len, "out of memory parsing %s", L->source);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {  // bad bytes: libyaml gives a byte offset, not a line
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && L->text[i]; i++) line += L->text[i] == '\n';
        return set_error(L->err, L->err_len, "YAML error in %s line %d (byte %zu): %s; the file must be UTF-8 text",
                         L->source, line, p->problem_offset, problem);
    }
    int at_tab = p->problem_mark.index < strlen(L->text) && L->text[p->problem_mark.index] == '\t';
    const char *tab = at_tab ? " (YAML does not allow tabs; indent with spaces)" : "";
    if (p->context)
        return set_error(L->err, L->err_len, "YAML syntax error in %s line %d, column %d: %s (%s from line %d)%s",
                         L->source, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, problem,
                         p->context, (int)p->context_mark.line + 1, tab);
    return set_error(L->err, L->err_len, "YAML syntax error in %s line %d, column %d: %s%s", L->source,
                     (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, problem, tab);
}

static const char *event_kind(const yaml_event_t *e) {
    switch (e->type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_ALIAS_EVENT: return "an alias (*name; aliases are not supported)";
    default: return "something else";
    }
}

static const char *scalar_text(const Loader *L) { return (const char *)L->event.data.scalar.value; }

// A plain empty, ~ or null value: an empty section, or an empty string value.
static int is_null_scalar(const Loader *L) {
    if (L->event.type != YAML_SCALAR_EVENT || L->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = scalar_text(L);
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

// A list value after its SEQUENCE_START, as the text "a, b, c" that ck_set_value parses: every
// element must be a plain scalar (a nested list or mapping is refused here, naming the key).
static int load_list(Loader *L, const KeySpec *k, char *text, size_t len) {
    size_t pos = 0;
    text[0] = '\0';
    for (int n = 0;; n++) {
        if (next_event(L)) return -1;
        if (L->event.type == YAML_SEQUENCE_END_EVENT) break;
        if (L->event.type != YAML_SCALAR_EVENT)
            return set_error(L->err, L->err_len, "%s must be %s; element %d is %s in %s line %d", k->key,
                             ck_expected_kind(k), n + 1, event_kind(&L->event), L->source, line_of(L));
        ck_append(text, len, &pos, "%s%s", n ? ", " : "", scalar_text(L));
    }
    if (!text[0]) snprintf(text, len, "[]");
    return 0;
}

// The keys of one section, after its MAPPING_START.
static int load_section(Loader *L, const char *section) {
    for (;;) {
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_END_EVENT) return 0;
        int line = line_of(L);
        if (L->event.type != YAML_SCALAR_EVENT)
            return set_error(L->err, L->err_len, "a key in section '%s' is %s in %s line %d; expected a name",
                             section, event_kind(&L->event), L->source, line);
        char full[220];
        snprintf(full, sizeof full, "%s.%.100s", section, scalar_text(L));
        const KeySpec *k = ck_find(full);
        if (!k) {
            char hint[400];
            ck_suggest_key(full, hint, sizeof hint);
            return set_error(L->err, L->err_len, "unknown key '%s' in %s line %d%s", full, L->source, line, hint);
        }
        size_t index = (size_t)(k - CONFIG_KEYS);
        if (L->key_line[index])
            return set_error(L->err, L->err_len, "duplicate key '%s' in %s line %d (already set at line %d)", k->key,
                             L->source, line, L->key_line[index]);
        L->key_line[index] = line;
        if (next_event(L)) return -1;
        line = line_of(L);
        char list[512];
        const char *text;
        if (k->type == KEY_INT_LIST && L->event.type == YAML_SEQUENCE_START_EVENT) {
            if (load_list(L, k, list, sizeof list)) return -1;
            text = list;
        } else if (L->event.type != YAML_SCALAR_EVENT) {
            return set_error(L->err, L->err_len, "%s must be a single value (%s), got %s in %s line %d", k->key,
                             ck_expected_kind(k), event_kind(&L->event), L->source, line);
        } else {
            text = k->type == KEY_STRING && is_null_scalar(L) ? "" : scalar_text(L);
        }
        char msg[700], hint[100];
        if (ck_set_value(L->cfg, k, text, msg, sizeof msg, hint, sizeof hint))
            return set_error(L->err, L->err_len, "%s in %s line %d%s", msg, L->source, line, hint);
    }
}

// The sections of the top-level mapping, after its MAPPING_START.
static int load_sections(Loader *L) {
    for (;;) {
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_END_EVENT) return 0;
        int line = line_of(L);
        if (L->event.type != YAML_SCALAR_EVENT)
            return set_error(L->err, L->err_len, "a top-level key is %s in %s line %d; expected a section name",
                             event_kind(&L->event), L->source, line);
        char section[104];
        snprintf(section, sizeof section, "%.100s", scalar_text(L));
        int first = ck_find_section(section);
        if (first < 0) {
            char hint[300];
            ck_suggest_section(section, hint, sizeof hint);
            return set_error(L->err, L->err_len, "unknown section '%s' in %s line %d%s", section, L->source, line, hint);
        }
        if (L->section_line[first])
            return set_error(L->err, L->err_len, "duplicate section '%s' in %s line %d (first at line %d); merge them",
                             section, L->source, line, L->section_line[first]);
        L->section_line[first] = line;
        if (next_event(L)) return -1;
        if (L->event.type == YAML_MAPPING_START_EVENT) {
            if (load_section(L, section)) return -1;
        } else if (!is_null_scalar(L)) {  // "train:" with nothing under it is fine
            char got[120];
            if (L->event.type == YAML_SCALAR_EVENT) ck_quote_got(scalar_text(L), got, sizeof got);
            else snprintf(got, sizeof got, "%s", event_kind(&L->event));
            return set_error(L->err, L->err_len, "section '%s' in %s line %d must hold 'key: value' lines, got %s",
                             section, L->source, line_of(L), got);
        }
    }
}

static int load_stream(Loader *L) {
    if (next_event(L)) return -1;  // STREAM_START
    if (next_event(L)) return -1;
    if (L->event.type == YAML_STREAM_END_EVENT) return 0;  // empty file or only comments
    if (next_event(L)) return -1;                          // after DOCUMENT_START: the root
    if (L->event.type == YAML_MAPPING_START_EVENT) {
        if (load_sections(L)) return -1;
    } else if (!is_null_scalar(L)) {
        char got[120];
        if (L->event.type == YAML_SCALAR_EVENT) ck_quote_got(scalar_text(L), got, sizeof got);
        else snprintf(got, sizeof got, "%s", event_kind(&L->event));
        return set_error(L->err, L->err_len, "%s line %d: expected sections like 'train:' with 'key: value' lines "
                         "under them, got %s", L->source, line_of(L), got);
    }
    if (next_event(L)) return -1;  // DOCUMENT_END
    if (next_event(L)) return -1;
    if (L->event.type != YAML_STREAM_END_EVENT)
        return set_error(L->err, L->err_len, "%s line %d: a second YAML document ('---'); a config is one document",
                         L->source, line_of(L));
    return 0;
}

// Loads on top of the defaults into a copy, so that cfg is untouched on error.
int config_load_string(Config *cfg, const char *yaml_text, const char *source_name, char *err, size_t err_len) {
    Config tmp;
    config_defaults(&tmp);
    Loader loader, *L = &loader;
    memset(L, 0, sizeof *L);
    L->source = source_name ? source_name : "<string>";
    L->text = yaml_text;
    L->cfg = &tmp;
    L->err = err;
    L->err_len = err_len;
    CHECK(yaml_parser_initialize(&L->parser), "yaml_parser_initialize failed (out of memory)");
    yaml_parser_set_input_string(&L->parser, (const unsigned char *)yaml_text, strlen(yaml_text));
    int rc = load_stream(L);
    if (L->have_event) yaml_event_delete(&L->event);
    yaml_parser_delete(&L->parser);
    if (rc == 0) memcpy(cfg, &tmp, sizeof tmp);
    return rc;
}

int config_load_file(Config *cfg, const char *path, char *err, size_t err_len) {
    size_t len;
    char *text = read_text_file(path, &len, err, err_len);
    if (!text) return -1;
    // The parser reads a C string: everything after a NUL would be silently ignored.
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        set_error(err, err_len, "%s has a NUL byte at offset %zu (line %d); a config is text: remove it (the file "
                  "may be damaged or not a YAML file)", path, (size_t)(nul - text), line);
        free(text);
        return -1;
    }
    int rc = config_load_string(cfg, text, path, err, err_len);
    free(text);
    return rc;
}

// The inside of a double-quoted YAML scalar that reads back as exactly s: escapes for quotes,
// backslashes, controls, and the characters YAML folds (line breaks) or refuses in a stream.
static void write_quoted(FILE *f, const char *s, size_t size) {
    size_t n = strnlen(s, size);
    for (size_t j = 0; j < n;) {
        unsigned char c = (unsigned char)s[j];
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)s + j, n - j, &cp);
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else if (len == 0) fprintf(f, "\\x%02x", c);   // not UTF-8 (ck_set_value refuses it): keep the byte visible
        else if (len > 1 && ((cp >= 0x80 && cp <= 0xA0) || cp == 0x2028 || cp == 0x2029 || cp >= 0xFFFE))
            fprintf(f, cp > 0xFFFF ? "\\U%08x" : "\\u%04x", (unsigned)cp);
        else fwrite(s + j, 1, (size_t)len, f);
        j += len > 0 ? (size_t)len : 1;
    }
}

char *config_to_yaml(const Config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "open_memstream failed (out of memory)");
    for (size_t i = 0; i < CONFIG_NUM_KEYS; i++) {
        const KeySpec *k = &CONFIG_KEYS[i];
        if (ck_first_of_section(i)) fprintf(f, "%.*s:\n", (int)ck_section_len(k->key), k->key);
        fprintf(f, "  %s: ", ck_leaf(k->key));
        if (k->type == KEY_STRING) {
            // Always double-quoted, so any text (':', '#', 'yes', leading blanks) reads back as itself.
            fputc('"', f);
            write_quoted(f, ck_cfield(cfg, k), k->size);
            fputs("\"\n", f);
        } else {
            char text[160];
            ck_format(k, cfg, text, sizeof text);
            fprintf(f, "%s\n", text);
        }
    }
    CHECK(fclose(f) == 0, "writing the config as YAML failed (out of memory)");
    return buf;
}
