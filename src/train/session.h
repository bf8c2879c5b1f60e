// session.h: what every command that runs the model needs, and nothing more: the config, the
// ranks, the backend context and the model. Training adds its state (train_state.h) and logging
// (train_log.h) on top; eval, reconstruct, encode and decode use a session alone.
#pragma once
#include "../dist/dist.h"
#include "../io/config.h"
#include "../model/model.h"

typedef struct {
    Config cfg;
    Dist *dist;
    OpsContext ctx;
    Model model;
} Session;

// The backend for cfg on this rank (one GPU per local rank; CPU threads shared by the node's
// ranks), the communicator, and the model for images of channels x height x width from a
// training set of the given variance. Parameters are zero until initialized or restored.
void session_open(Session *s, const Config *cfg, Dist *dist, int channels, int height, int width, double variance);
void session_close(Session *s);
