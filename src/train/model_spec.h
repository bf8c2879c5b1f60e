// model_spec.h: the one place where the config's model and quantizer keys become the model's
// plain spec (src/model/spec.h).
#pragma once
#include <stddef.h>

#include "../io/config.h"
#include "../model/spec.h"

// For images of channels x height x width with the training set's variance (the resnet's loss
// divides the MSE by it). 0, or -1 with err naming the key and what to change.
int model_spec_from_config(const Config *cfg, int channels, int height, int width, double variance, ModelSpec *spec,
                           char *err, size_t err_len);

// data.range with auto resolved per arch: centered ([-0.5, 0.5], resnet), unit ([0, 1], small),
// symmetric ([-1, 1], groupnorm).
const char *model_data_range(const Config *cfg);
