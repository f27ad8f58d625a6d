/*
 * decode_check.c -- decodes a JPEG or PNG the way torch/image's loaders do (generic/jpeg.c
 * libjpeg_(Main_load): library defaults, jpeg_read_scanlines, output_components channels;
 * generic/png.c libpng_(Main_load): png_set_expand for palette, png_set_expand_gray_1_2_4_to_8
 * for gray < 8 bit) and writes the 8-bit samples as raw CHW bytes:
 *
 *   decode_check FILE OUT.u8     (prints "C H W" on stdout)
 *
 * Used by torch_image.py --check-decode to show that PIL's Image.open(p).convert('RGB') gives
 * the same bytes for the fixture photos. Written for snzoo; it is not torch code (the loaders'
 * logic is re-typed, not copied). 16-bit PNGs are not handled (none among the fixtures).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <png.h>

static void out_chw(const char *path, unsigned char *hwc, int c, int h, int w) {
  FILE *f = fopen(path, "wb");
  int k, y, x;
  for (k = 0; k < c; k++)
    for (y = 0; y < h; y++)
      for (x = 0; x < w; x++) fputc(hwc[((long)y * w + x) * c + k], f);
  fclose(f);
  printf("%d %d %d\n", c, h, w);
}

static int do_jpeg(FILE *in, const char *out) {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr jerr;
  unsigned char *buf;
  int c, h, w;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, in);
  jpeg_read_header(&cinfo, TRUE);
  jpeg_start_decompress(&cinfo);           /* defaults, as torch/image */
  c = cinfo.output_components; h = cinfo.output_height; w = cinfo.output_width;
  buf = malloc((size_t)c * h * w);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = buf + (size_t)cinfo.output_scanline * w * c;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  out_chw(out, buf, c, h, w);
  return 0;
}

static int do_png(FILE *in, const char *out) {
  png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(p);
  int w, h, ct, bd, depth = 0, y;
  unsigned char *buf;
  png_bytep *rows;
  if (setjmp(png_jmpbuf(p))) { fprintf(stderr, "png error\n"); return 1; }
  png_init_io(p, in);
  png_read_info(p, info);
  w = png_get_image_width(p, info); h = png_get_image_height(p, info);
  ct = png_get_color_type(p, info); bd = png_get_bit_depth(p, info);
  if (ct == PNG_COLOR_TYPE_RGBA) depth = 4;
  else if (ct == PNG_COLOR_TYPE_RGB) depth = 3;
  else if (ct == PNG_COLOR_TYPE_GRAY) { if (bd < 8) png_set_expand_gray_1_2_4_to_8(p); depth = 1; }
  else if (ct == PNG_COLOR_TYPE_GA) depth = 2;
  else if (ct == PNG_COLOR_TYPE_PALETTE) { depth = 3; png_set_expand(p); }
  if (bd == 16) { fprintf(stderr, "16-bit PNG not handled\n"); return 1; }
  png_read_update_info(p, info);
  if (png_get_rowbytes(p, info) != (size_t)w * depth) { fprintf(stderr, "unexpected row bytes\n"); return 1; }
  buf = malloc((size_t)depth * h * w);
  rows = malloc(sizeof(png_bytep) * h);
  for (y = 0; y < h; y++) rows[y] = buf + (size_t)y * w * depth;
  png_read_image(p, rows);
  png_read_end(p, NULL);
  png_destroy_read_struct(&p, &info, NULL);
  out_chw(out, buf, depth, h, w);
  return 0;
}

int main(int argc, char **argv) {
  unsigned char hdr[4] = {0};
  FILE *in;
  if (argc != 3) { fprintf(stderr, "usage: %s FILE OUT.u8\n", argv[0]); return 1; }
  in = fopen(argv[1], "rb");
  if (!in || fread(hdr, 1, 4, in) != 4) { perror(argv[1]); return 1; }
  rewind(in);
  if (hdr[0] == 0xff && hdr[1] == 0xd8 && hdr[2] == 0xff) return do_jpeg(in, argv[2]);
  if (!memcmp(hdr, "\x89PNG", 4)) return do_png(in, argv[2]);
  fprintf(stderr, "not a JPEG or PNG\n");
  return 1;
}
