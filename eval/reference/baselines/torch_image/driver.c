/*
 * driver.c -- command-line driver for torch_image_scale.c (snzoo).
 *
 *   torch_image_scale MODE C H W OUT_H OUT_W IN.f32 OUT.f32
 *
 * MODE is bicubic or bilinear. IN.f32 holds C*H*W raw little-endian float32 values, C-order
 * (CHW), exactly like a contiguous torch.FloatTensor of size C x H x W; C = 0 means a 2-D
 * H x W tensor. OUT.f32 receives C*OUT_H*OUT_W float32 values, as
 *   dst = torch.FloatTensor(C, OUT_H, OUT_W); src.image.scaleBicubic(src, dst)
 * i.e. image.scale(src, OUT_W, OUT_H, MODE) with integer sizes. The destination is filled
 * with NaN before the call (Torch leaves it uninitialised): an output element the C code never
 * writes comes back as NaN.
 */
#include "torch_image_scale.c"

static void *read_all(const char *path, size_t n_bytes) {
  FILE *f = fopen(path, "rb");
  void *buf = malloc(n_bytes ? n_bytes : 1);
  if (!f) { perror(path); exit(1); }
  if (fread(buf, 1, n_bytes, f) != n_bytes) { fprintf(stderr, "%s: short read\n", path); exit(1); }
  if (fgetc(f) != EOF) { fprintf(stderr, "%s: longer than C*H*W float32\n", path); exit(1); }
  fclose(f);
  return buf;
}

static void make3(THFloatTensor *t, real *data, long c, long h, long w) {
  t->data = data; t->owns = 0;
  if (c == 0) {
    t->nDimension = 2; t->size[0] = h; t->size[1] = w; t->size[2] = 0;
    t->stride[0] = w; t->stride[1] = 1; t->stride[2] = 0;
  } else {
    t->nDimension = 3; t->size[0] = c; t->size[1] = h; t->size[2] = w;
    t->stride[0] = h * w; t->stride[1] = w; t->stride[2] = 1;
  }
}

int main(int argc, char **argv) {
  long c, h, w, oh, ow, n_in, n_out, i, cc;
  THFloatTensor src, dst;
  real *in, *out;
  FILE *f;
  if (argc != 9) {
    fprintf(stderr, "usage: %s bicubic|bilinear C H W OUT_H OUT_W IN.f32 OUT.f32\n", argv[0]);
    return 1;
  }
  c = atol(argv[2]); h = atol(argv[3]); w = atol(argv[4]);
  oh = atol(argv[5]); ow = atol(argv[6]);
  if (c < 0 || h < 1 || w < 1 || oh < 1 || ow < 1) { fprintf(stderr, "bad sizes\n"); return 1; }
  cc = c == 0 ? 1 : c;
  n_in = cc * h * w; n_out = cc * oh * ow;
  in = (real *)read_all(argv[7], sizeof(real) * (size_t)n_in);
  out = (real *)malloc(sizeof(real) * (size_t)n_out);
  for (i = 0; i < n_out; i++) out[i] = NAN;
  make3(&src, in, c, h, w);
  make3(&dst, out, c, oh, ow);
  torch_image_scale_float(argv[1], &src, &dst);
  f = fopen(argv[8], "wb");
  if (!f || fwrite(out, sizeof(real), (size_t)n_out, f) != (size_t)n_out) { perror(argv[8]); return 1; }
  fclose(f);
  free(in); free(out);
  return 0;
}
