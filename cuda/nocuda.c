/* cuda/nocuda.c — cuda.h in a build without CUDA (LOCO_HAVE_CUDA 0): no device exists, so no
 * context or GPU model can be created; every call that would need one says how to get a CUDA
 * build. The layers above call cuda.h the same way in both builds, with no #if of their own. */
#include "cuda/cuda.h"

#if !LOCO_HAVE_CUDA

static loco_status no_cuda(loco_error *err)
{
    return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                          "loco was built without CUDA: rebuild on a machine with nvcc and NCCL "
                          "(cmake -DLOCO_CUDA=ON) to use the GPU");
}

bool loco_cuda_built(void) { return false; }
int loco_cuda_device_count(void) { return 0; }

loco_status loco_cuda_ctx_init(loco_cuda_ctx **ctx, int device, loco_error *err)
{
    (void)device;
    *ctx = NULL;
    return no_cuda(err);
}

void loco_cuda_ctx_free(loco_cuda_ctx *ctx) { (void)ctx; }
const char *loco_cuda_ctx_device_name(const loco_cuda_ctx *ctx) { (void)ctx; return "none"; }
int loco_cuda_ctx_sm_count(const loco_cuda_ctx *ctx) { (void)ctx; return 0; }
loco_status loco_cuda_sync(loco_cuda_ctx *ctx, loco_error *err) { (void)ctx; return no_cuda(err); }

loco_status loco_cuda_alloc(void **dev, size_t bytes, loco_error *err)
{
    (void)bytes;
    *dev = NULL;
    return no_cuda(err);
}

void loco_cuda_free(void *dev) { (void)dev; }

loco_status loco_cuda_pin(void *host, size_t bytes, loco_error *err)
{
    (void)host, (void)bytes;
    return no_cuda(err);
}

void loco_cuda_unpin(void *host) { (void)host; }

loco_status loco_cuda_upload(loco_cuda_ctx *ctx, void *dev, const void *host, size_t bytes,
                             loco_error *err)
{
    (void)ctx, (void)dev, (void)host, (void)bytes;
    return no_cuda(err);
}

loco_status loco_cuda_download(loco_cuda_ctx *ctx, void *host, const void *dev, size_t bytes,
                               loco_error *err)
{
    (void)ctx, (void)dev, (void)host, (void)bytes;
    return no_cuda(err);
}

loco_status loco_cuda_copy(loco_cuda_ctx *ctx, void *dst, const void *src, size_t bytes,
                           loco_error *err)
{
    (void)ctx, (void)dst, (void)src, (void)bytes;
    return no_cuda(err);
}

loco_status loco_cuda_zero(loco_cuda_ctx *ctx, void *dev, size_t bytes, loco_error *err)
{
    (void)ctx, (void)dev, (void)bytes;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_init(loco_cuda_gpt **gpt, loco_cuda_ctx *ctx,
                               const loco_cuda_gpt_config *cfg, const loco_tensor_table *table,
                               int B, int T, loco_error *err)
{
    (void)ctx, (void)cfg, (void)table, (void)B, (void)T;
    *gpt = NULL;
    return no_cuda(err);
}

void loco_cuda_gpt_free(loco_cuda_gpt *gpt) { (void)gpt; }
float *loco_cuda_gpt_params(loco_cuda_gpt *gpt) { (void)gpt; return NULL; }
uint16_t *loco_cuda_gpt_params_bf16(loco_cuda_gpt *gpt) { (void)gpt; return NULL; }
float *loco_cuda_gpt_grads(loco_cuda_gpt *gpt) { (void)gpt; return NULL; }
loco_cuda_ctx *loco_cuda_gpt_ctx(loco_cuda_gpt *gpt) { (void)gpt; return NULL; }

loco_status loco_cuda_gpt_upload_params(loco_cuda_gpt *gpt, const float *host, loco_error *err)
{
    (void)gpt, (void)host;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_download_params(loco_cuda_gpt *gpt, float *host, loco_error *err)
{
    (void)gpt, (void)host;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_download_grads(loco_cuda_gpt *gpt, float *host, loco_error *err)
{
    (void)gpt, (void)host;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_refresh_bf16(loco_cuda_gpt *gpt, loco_error *err)
{
    (void)gpt;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_forward(loco_cuda_gpt *gpt, const uint16_t *tokens,
                                  const uint16_t *targets, int B, int T, float *loss,
                                  loco_error *err)
{
    (void)gpt, (void)tokens, (void)targets, (void)B, (void)T, (void)loss;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_backward(loco_cuda_gpt *gpt, loco_error *err)
{
    (void)gpt;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_zero_grad(loco_cuda_gpt *gpt, loco_error *err)
{
    (void)gpt;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_download_logits(loco_cuda_gpt *gpt, float *host, loco_error *err)
{
    (void)gpt, (void)host;
    return no_cuda(err);
}

void loco_cuda_gpt_set_grad_hook(loco_cuda_gpt *gpt, loco_cuda_grad_hook hook, void *user)
{
    (void)gpt, (void)hook, (void)user;
}

loco_status loco_cuda_gpt_profile(loco_cuda_gpt *gpt, bool on, loco_error *err)
{
    (void)gpt, (void)on;
    return no_cuda(err);
}

loco_status loco_cuda_gpt_profile_report(loco_cuda_gpt *gpt, FILE *out, loco_error *err)
{
    (void)gpt, (void)out;
    return no_cuda(err);
}

loco_status loco_cuda_decay_init(loco_cuda_decay **decay, const loco_tensor_table *table,
                                 size_t n, loco_error *err)
{
    (void)table, (void)n;
    *decay = NULL;
    return no_cuda(err);
}

void loco_cuda_decay_free(loco_cuda_decay *decay) { (void)decay; }

loco_status loco_cuda_grad_norm(loco_cuda_ctx *ctx, const float *grads, size_t n, double *norm,
                                loco_error *err)
{
    (void)ctx, (void)grads, (void)n, (void)norm;
    return no_cuda(err);
}

loco_status loco_cuda_scale(loco_cuda_ctx *ctx, float *x, size_t n, float s, loco_error *err)
{
    (void)ctx, (void)x, (void)n, (void)s;
    return no_cuda(err);
}

loco_status loco_cuda_bind(loco_cuda_ctx *ctx, loco_error *err)
{
    (void)ctx;
    return no_cuda(err);
}

loco_status loco_cuda_sub(loco_cuda_ctx *ctx, float *out, const float *a, const float *b,
                          size_t n, loco_error *err)
{
    (void)ctx, (void)out, (void)a, (void)b, (void)n;
    return no_cuda(err);
}

loco_status loco_cuda_adamw_update(loco_cuda_ctx *ctx, float *params, uint16_t *params_bf16,
                                   const float *grads, float *m, float *v,
                                   const loco_cuda_decay *decay, float lr, float beta1,
                                   float beta2, float eps, float weight_decay, int64_t t,
                                   size_t n, loco_error *err)
{
    (void)ctx, (void)params, (void)params_bf16, (void)grads, (void)m, (void)v, (void)decay;
    (void)lr, (void)beta1, (void)beta2, (void)eps, (void)weight_decay, (void)t, (void)n;
    return no_cuda(err);
}

loco_status loco_cuda_sgd_update(loco_cuda_ctx *ctx, float *params, uint16_t *params_bf16,
                                 const float *grads, float *buf, const loco_cuda_decay *decay,
                                 float lr, float momentum, bool nesterov, float weight_decay,
                                 size_t n, loco_error *err)
{
    (void)ctx, (void)params, (void)params_bf16, (void)grads, (void)buf, (void)decay, (void)lr;
    (void)momentum, (void)nesterov, (void)weight_decay, (void)n;
    return no_cuda(err);
}

loco_status loco_cuda_outer_nesterov(loco_cuda_ctx *ctx, float *outer, float *local,
                                     uint16_t *local_bf16, const float *delta, float *mom,
                                     float lr, float mu, size_t n, loco_error *err)
{
    (void)ctx, (void)outer, (void)local, (void)local_bf16, (void)delta, (void)mom, (void)lr;
    (void)mu, (void)n;
    return no_cuda(err);
}

bool loco_cuda_nccl_built(void) { return false; }

loco_status loco_cuda_nccl_unique_id(uint8_t id[LOCO_NCCL_ID_BYTES], loco_error *err)
{
    (void)id;
    return no_cuda(err);
}

loco_status loco_cuda_nccl_init(loco_cuda_nccl **nccl, loco_cuda_ctx *ctx,
                                const uint8_t id[LOCO_NCCL_ID_BYTES], int nranks, int rank,
                                loco_error *err)
{
    (void)ctx, (void)id, (void)nranks, (void)rank;
    *nccl = NULL;
    return no_cuda(err);
}

void loco_cuda_nccl_free(loco_cuda_nccl *nccl) { (void)nccl; }

loco_status loco_cuda_nccl_allreduce_mean(loco_cuda_nccl *nccl, float *buf, size_t n,
                                          loco_error *err)
{
    (void)nccl, (void)buf, (void)n;
    return no_cuda(err);
}

loco_status loco_cuda_nccl_join(loco_cuda_nccl *nccl, loco_error *err)
{
    (void)nccl;
    return no_cuda(err);
}

size_t loco_cuda_quant_payload_bytes(const loco_cuda_quant_params *p, size_t n)
{
    (void)p, (void)n;
    return 0;
}

loco_status loco_cuda_quant_encode(loco_cuda_ctx *ctx, const loco_cuda_quant_params *p,
                                   const float *in, size_t n, uint8_t *payload, loco_error *err)
{
    (void)ctx, (void)p, (void)in, (void)n, (void)payload;
    return no_cuda(err);
}

size_t loco_cuda_topk_scratch_bytes(size_t n)
{
    (void)n;
    return 0;
}

loco_status loco_cuda_topk_select(loco_cuda_ctx *ctx, const float *x, size_t n, size_t k,
                                  uint32_t *idx, float *val, void *scratch, loco_error *err)
{
    (void)ctx, (void)x, (void)n, (void)k, (void)idx, (void)val, (void)scratch;
    return no_cuda(err);
}

loco_status loco_cuda_dct_topk_encode(loco_cuda_ctx *ctx, const loco_cuda_dct_params *p,
                                      const float *in, uint8_t *payload, loco_error *err)
{
    (void)ctx, (void)p, (void)in, (void)payload;
    return no_cuda(err);
}

#endif /* !LOCO_HAVE_CUDA */
