// eval.h: reconstruction and codebook metrics of the current parameters on a dataset, sharded
// over ranks.
#pragma once
#include "../io/dataset.h"
#include "metrics.h"
#include "session.h"

// Every image of ds (the first max_batches global batches of it when max_batches > 0): global
// batch b holds images [b G, (b + 1) G), G = batch x ranks, and rank r its slice; the last batch
// is padded and only its real images count. Collective; reduced over ranks.
StepMetrics evaluate(Session *s, const Dataset *ds, int max_batches);
