// cpu_linear.c: PyTorch nn.Linear on the CPU backend. Row-major x [n, in], w [out, in] and
// y [n, out] are column-major [in, n], [in, out] and [out, n] to BLAS, so y = x w^T + b is
// Y = W^T X, dx = dy w is DX = W DY, and dw = dy^T x is DW = X DY^T (cuda_linear.cu: the same).
#include <cblas.h>
#include <string.h>

#include "../../src/core/common.h"
#include "../op_checks.h"
#include "cpu_internal.h"

// As torch.addmm: the bias is broadcast into y first and the product added onto it (beta = 1).
void cpu_linear_forward(OpsContext *ctx, const float *x, const float *w, const float *b, int n, int in, int out,
                        float *y) {
    check_linear("linear_forward", n, in, out);
    if (n == 0) return;
    if (b)
        for (int s = 0; s < n; s++) memcpy(y + (size_t)s * out, b, (size_t)out * sizeof(float));
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, out, n, in, 1.0f, w, in, x, in, b ? 1.0f : 0.0f, y, out);
}

void cpu_linear_backward(OpsContext *ctx, const float *x, const float *w, const float *dy, int n, int in, int out,
                         float *dx, float *dw, float *db) {
    check_linear("linear_backward", n, in, out);
    if (n == 0) {   // no samples: the parameter gradients are zero
        memset(dw, 0, (size_t)out * in * sizeof(float));
        if (db) memset(db, 0, (size_t)out * sizeof(float));
        return;
    }
    if (dx) cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, in, n, out, 1.0f, w, in, dy, out, 0.0f, dx, in);
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, in);
    if (!db) return;
    for (int o = 0; o < out; o++) {
        double sum = 0.0;
        for (int s = 0; s < n; s++) sum += (double)dy[(size_t)s * out + o];
        db[o] = (float)sum;
    }
}
