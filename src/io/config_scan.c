// config_scan.c: which keys of a stored config this program does not know (config.h). The loader
// stops at the first unknown key; `info` and the refusal of a config from a newer version want
// all of them.
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "core/common.h"
#include "io/config.h"

typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int have_event;
} Scan;

static int next(Scan *s) {
    if (s->have_event) yaml_event_delete(&s->event);
    s->have_event = yaml_parser_parse(&s->parser, &s->event) != 0;
    return s->have_event ? 0 : -1;
}

// Skips the value whose first event is the current one (a scalar, or a whole nested block).
static int skip_value(Scan *s) {
    int depth = 0;
    do {
        yaml_event_type_t t = s->event.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) depth++;
        if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) depth--;
        if (t == YAML_STREAM_END_EVENT) return -1;
        if (depth > 0 && next(s)) return -1;
    } while (depth > 0);
    return 0;
}

static void add_key(const char *key, int *count, char *list, size_t list_len) {
    size_t used = strlen(list);
    if (used + strlen(key) + 8 < list_len) snprintf(list + used, list_len - used, "%s%s", *count ? ", " : "", key);
    else if (used + 5 < list_len && !strstr(list, "...")) snprintf(list + used, list_len - used, ", ...");
    (*count)++;
}

// The keys of one section, after its MAPPING_START.
static int scan_section(Scan *s, const char *section, int *count, char *list, size_t list_len) {
    for (;;) {
        if (next(s)) return -1;
        if (s->event.type == YAML_MAPPING_END_EVENT) return 0;
        if (s->event.type != YAML_SCALAR_EVENT) return -1;
        char key[300];
        snprintf(key, sizeof key, "%.100s.%.150s", section, (const char *)s->event.data.scalar.value);
        if (!config_has_key(key)) add_key(key, count, list, list_len);
        if (next(s) || skip_value(s)) return -1;
    }
}

static int scan_root(Scan *s, int *count, char *list, size_t list_len) {
    if (next(s) || next(s)) return -1;   // STREAM_START, then DOCUMENT_START
    if (s->event.type == YAML_STREAM_END_EVENT) return 0;   // empty, or only comments
    if (next(s)) return -1;                                 // the root
    if (s->event.type == YAML_SCALAR_EVENT && s->event.data.scalar.length == 0) return 0;
    if (s->event.type != YAML_MAPPING_START_EVENT) return -1;
    for (;;) {
        if (next(s)) return -1;
        if (s->event.type == YAML_MAPPING_END_EVENT) return 0;
        if (s->event.type != YAML_SCALAR_EVENT) return -1;
        char section[104];
        snprintf(section, sizeof section, "%.100s", (const char *)s->event.data.scalar.value);
        if (next(s)) return -1;
        if (s->event.type == YAML_MAPPING_START_EVENT) {
            if (scan_section(s, section, count, list, list_len)) return -1;
        } else if (skip_value(s)) {
            return -1;
        }
    }
}

int config_unknown_keys(const char *yaml_text, char *list, size_t list_len) {
    Scan s;
    memset(&s, 0, sizeof s);
    list[0] = '\0';
    int count = 0;
    CHECK(yaml_parser_initialize(&s.parser), "yaml_parser_initialize failed (out of memory)");
    yaml_parser_set_input_string(&s.parser, (const unsigned char *)yaml_text, strlen(yaml_text));
    int rc = scan_root(&s, &count, list, list_len);
    if (s.have_event) yaml_event_delete(&s.event);
    yaml_parser_delete(&s.parser);
    return rc == 0 ? count : -1;
}
