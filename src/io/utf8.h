// utf8.h: strict UTF-8 decoding for text that YAML must read back (config values).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Decodes the character at s (n bytes available): its length 1..4 and code point, or 0 for a
// byte that does not start a valid character (overlong forms and surrogates are invalid).
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
// Offset of the first byte of s that is not valid UTF-8, or -1 when all of it is.
long utf8_invalid_at(const char *s);
