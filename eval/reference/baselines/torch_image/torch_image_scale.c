/*
 * torch_image_scale.c -- Lua Torch `image.scale` (modes 'bicubic' and 'bilinear') for
 * real = float, compiled outside Torch.
 *
 * The block between the VERBATIM markers below is copied byte for byte from
 *   https://github.com/torch/image   generic/image.c, lines 5-338
 *   commit 5aa18819b6a7b44751f8a858bd232d1c07b67985 (2017-04-20, the last commit of torch/image),
 *   blob 36b105c98f66b6c0186c1f2df09f10adb0e1e428;
 *   sha256 of those 334 lines (each with its newline) is checked by build.sh.
 * It holds image_(Main_scaleCubic_rowcol), image_(Main_cubicInterpolate), image_(Main_scaleBicubic)
 * (and the bilinear twins), i.e. what `image.scale(src, w, h, 'bicubic')` runs via
 * src.image.scaleBicubic(src, dst) for a torch.FloatTensor.
 *
 * Everything outside the markers is a shim written for snzoo: it replaces TH / luaT / Lua
 * (THFloatTensor with a data pointer, sizes and strides; lua_State carrying the two tensor
 * arguments) so that gcc compiles the SAME arithmetic as the Torch build did for real = float
 * (generic/image.c is included by image.c with THGenerateAllTypes.h; for Float, TH defines
 * real = float, Real = Float, TH_REAL_IS_FLOAT, and image_(NAME) = image_Float##NAME).
 * Torch compiled it with CMake Release flags (-O3 -DNDEBUG) plus -std=c99 and OpenMP
 * (torch/image CMakeLists.txt); no -ffast-math, no -march (so no FMA on x86-64).
 *
 * Original licence of torch/image (BSD 3-clause, COPYRIGHT.txt):
 *
 * Copyright (c) 2011-2014 Idiap Research Institute (Ronan Collobert)
 * Copyright (c) 2012-2014 Deepmind Technologies (Koray Kavukcuoglu)
 * Copyright (c) 2011-2012 NEC Laboratories America (Koray Kavukcuoglu)
 * Copyright (c) 2011-2013 NYU (Clement Farabet)
 * Copyright (c) 2006-2010 NEC Laboratories America (Ronan Collobert, Leon Bottou, Iain Melvin, Jason Weston)
 * Copyright (c) 2006      Idiap Research Institute (Samy Bengio)
 * Copyright (c) 2001-2004 Idiap Research Institute (Ronan Collobert, Samy Bengio, Johnny Mariethoz)
 *
 * All rights reserved.
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are met:
 *
 * 1. Redistributions of source code must retain the above copyright
 *    notice, this list of conditions and the following disclaimer.
 *
 * 2. Redistributions in binary form must reproduce the above copyright
 *    notice, this list of conditions and the following disclaimer in the
 *    documentation and/or other materials provided with the distribution.
 *
 * 3. Neither the names of Deepmind Technologies, NYU, NEC Laboratories America
 *    and IDIAP Research Institute nor the names of its contributors may be
 *    used to endorse or promote products derived from this software without
 *    specific prior written permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
 * AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
 * IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 * ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE
 * LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 * CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 * SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 * INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 * CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 * ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 */

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <math.h>
#include <float.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float expressions must be evaluated in float (FLT_EVAL_METHOD == 0, e.g. x86-64 SSE)"
#endif
#ifdef __FAST_MATH__
#error "do not compile with -ffast-math"
#endif
#ifdef __FMA__
#error "do not compile with FMA enabled (-mfma / -march=native): Torch's build had none"
#endif

/* ---------------- shims (snzoo) ---------------- */
typedef float real;
#define TH_REAL_IS_FLOAT 1
#define image_(NAME) image_Float##NAME
#define THTensor THFloatTensor
#define THTensor_(NAME) THFloatTensor_##NAME
#define torch_Tensor "torch.FloatTensor"

typedef struct THFloatTensor {
  real *data;          /* first element (storage + storageOffset) */
  int nDimension;      /* 2 (H x W) or 3 (C x H x W) */
  long size[3];
  long stride[3];
  int owns;
} THFloatTensor;

typedef struct lua_State { THFloatTensor *arg[2]; } lua_State;

static void *luaT_checkudata(lua_State *L, int idx, const char *tname) {
  (void)tname; return L->arg[idx - 1];
}
static void luaL_error(lua_State *L, const char *fmt, ...) {
  va_list ap; (void)L; va_start(ap, fmt); vfprintf(stderr, fmt, ap); va_end(ap);
  fputc('\n', stderr); exit(2);
}
#define luaL_argcheck(L, cond, arg, msg) \
  do { if (!(cond)) luaL_error((L), "bad argument #%d (%s)", (arg), (msg)); } while (0)

static real *THFloatTensor_data(THFloatTensor *t) { return t->data; }

/* TH's newWithSize2d returns UNINITIALISED memory (THAlloc = malloc). The shim fills it with
   NaN so that any output that depends on never-written elements (see the src_len == 1 case
   of Main_scaleCubic_rowcol) shows up as NaN instead of as arbitrary garbage. */
static THFloatTensor *THFloatTensor_newWithSize2d(long s0, long s1) {
  THFloatTensor *t = (THFloatTensor *)malloc(sizeof(THFloatTensor));
  long i, n = s0 * s1;
  t->data = (real *)malloc(sizeof(real) * (size_t)(n > 0 ? n : 1));
  for (i = 0; i < n; i++) t->data[i] = NAN;
  t->nDimension = 2; t->size[0] = s0; t->size[1] = s1; t->size[2] = 0;
  t->stride[0] = s1; t->stride[1] = 1; t->stride[2] = 0; t->owns = 1;
  return t;
}
static void THFloatTensor_free(THFloatTensor *t) { if (t->owns) free(t->data); free(t); }
/* ---------------- end of shims ---------------- */

/* ======== BEGIN VERBATIM torch/image generic/image.c lines 5-338 ======== */
#undef MAX
#define MAX(a,b) ( ((a)>(b)) ? (a) : (b) )

#undef MIN
#define MIN(a,b) ( ((a)<(b)) ? (a) : (b) )

#undef TAPI
#define TAPI __declspec(dllimport)

#ifndef M_PI
#define M_PI    3.14159265358979323846
#endif

#undef temp_t
#if defined(TH_REAL_IS_FLOAT) || defined(TH_REAL_IS_DOUBLE)
#define temp_t real
#else
#define temp_t float
#endif


static inline real image_(FromIntermediate)(temp_t x) {
#ifdef TH_REAL_IS_BYTE
  x += 0.5;
  if( x <= 0 ) return 0;
  if( x >= 255 ) return 255;
#endif
  return x;
}


static void image_(Main_op_validate)( lua_State *L,  THTensor *Tsrc, THTensor *Tdst){

  long src_depth = 1;
  long dst_depth = 1;

  luaL_argcheck(L, Tsrc->nDimension==2 || Tsrc->nDimension==3, 1, "rotate: src not 2 or 3 dimensional");
  luaL_argcheck(L, Tdst->nDimension==2 || Tdst->nDimension==3, 2, "rotate: dst not 2 or 3 dimensional");

  if(Tdst->nDimension == 3) dst_depth =  Tdst->size[0];
  if(Tsrc->nDimension == 3) src_depth =  Tsrc->size[0];

  if( (Tdst->nDimension==3 && ( src_depth!=dst_depth)) ||
      (Tdst->nDimension!=Tsrc->nDimension) )
    luaL_error(L, "image.scale: src and dst depths do not match");

  if( Tdst->nDimension==3 && ( src_depth!=dst_depth) )
    luaL_error(L, "image.scale: src and dst depths do not match");
}

static long image_(Main_op_stride)( THTensor *T,int i){
  if (T->nDimension == 2) {
    if (i == 0) return 0;
    else return T->stride[i-1];
  }
  return T->stride[i];
}

static long image_(Main_op_depth)( THTensor *T){
  if(T->nDimension == 3) return T->size[0]; /* rgb or rgba */
  return 1; /* greyscale */
}

static void image_(Main_scaleLinear_rowcol)(THTensor *Tsrc,
                                            THTensor *Tdst,
                                            long src_start,
                                            long dst_start,
                                            long src_stride,
                                            long dst_stride,
                                            long src_len,
                                            long dst_len ) {

  real *src= THTensor_(data)(Tsrc);
  real *dst= THTensor_(data)(Tdst);

  if ( dst_len > src_len ){
    long di;
    float si_f;
    long si_i;
    float scale = (float)(src_len - 1) / (dst_len - 1);

    if ( src_len == 1 ) {
      for( di = 0; di < dst_len - 1; di++ ) {
        long dst_pos = dst_start + di*dst_stride;
        dst[dst_pos] = src[ src_start ];
      }
    } else {
      for( di = 0; di < dst_len - 1; di++ ) {
        long dst_pos = dst_start + di*dst_stride;
        si_f = di * scale; si_i = (long)si_f; si_f -= si_i;

        dst[dst_pos] = image_(FromIntermediate)(
            (1 - si_f) * src[ src_start + si_i * src_stride ] +
            si_f * src[ src_start + (si_i + 1) * src_stride ]);
      }
    }

    dst[ dst_start + (dst_len - 1) * dst_stride ] =
      src[ src_start + (src_len - 1) * src_stride ];
  }
  else if ( dst_len < src_len ) {
    long di;
    long si0_i = 0; float si0_f = 0;
    long si1_i; float si1_f;
    long si;
    float scale = (float)src_len / dst_len;
    float acc, n;

    for( di = 0; di < dst_len; di++ )
      {
        si1_f = (di + 1) * scale; si1_i = (long)si1_f; si1_f -= si1_i;
        acc = (1 - si0_f) * src[ src_start + si0_i * src_stride ];
        n = 1 - si0_f;
        for( si = si0_i + 1; si < si1_i; si++ )
          {
            acc += src[ src_start + si * src_stride ];
            n += 1;
          }
        if( si1_i < src_len )
          {
            acc += si1_f * src[ src_start + si1_i*src_stride ];
            n += si1_f;
          }
        dst[ dst_start + di*dst_stride ] = image_(FromIntermediate)(acc / n);
        si0_i = si1_i; si0_f = si1_f;
      }
  }
  else {
    long i;
    for( i = 0; i < dst_len; i++ )
      dst[ dst_start + i*dst_stride ] = src[ src_start + i*src_stride ];
  }
}


static inline temp_t image_(Main_cubicInterpolate)(temp_t p0,
                                                   temp_t p1,
                                                   temp_t p2,
                                                   temp_t p3,
                                                   temp_t x) {
  temp_t a0 = p1;
  temp_t a1 = p2 - p0;
  temp_t a2 = 2 * p0 - 5 * p1 + 4 * p2 - p3;
  temp_t a3 = 3 * (p1 - p2) + p3 - p0;
  return a0 + 0.5 * x * (a1 + x * (a2 + x * a3));
}


static void image_(Main_scaleCubic_rowcol)(THTensor *Tsrc,
                                           THTensor *Tdst,
                                           long src_start,
                                           long dst_start,
                                           long src_stride,
                                           long dst_stride,
                                           long src_len,
                                           long dst_len ) {

  real *src= THTensor_(data)(Tsrc);
  real *dst= THTensor_(data)(Tdst);

  if ( dst_len == src_len ){
    long i;
    for( i = 0; i < dst_len; i++ )
      dst[ dst_start + i*dst_stride ] = src[ src_start + i*src_stride ];
  } else if ( src_len == 1 ) {
     long i;
     for( i = 0; i < dst_len - 1; i++ ) {
       long dst_pos = dst_start + i*dst_stride;
       dst[dst_pos] = src[ src_start ];
     }
  } else {
    long di;
    float si_f;
    long si_i;
    float scale;
    if (dst_len == 1)
      scale = (float)(src_len - 1);
    else
      scale = (float)(src_len - 1) / (dst_len - 1);

    for( di = 0; di < dst_len - 1; di++ ) {
      long dst_pos = dst_start + di*dst_stride;
      si_f = di * scale; si_i = (long)si_f; si_f -= si_i;

      temp_t p0;
      temp_t p1 = src[ src_start + si_i * src_stride ];
      temp_t p2 = src[ src_start + (si_i + 1) * src_stride ];
      temp_t p3;
      if (si_i > 0) {
        p0 = src[ src_start + (si_i - 1) * src_stride ];
      } else {
        p0 = 2 * p1 - p2;
      }
      if (si_i + 2 < src_len) {
        p3 = src[ src_start + (si_i + 2) * src_stride ];
      } else {
        p3 = 2 * p2 - p1;
      }

      temp_t value = image_(Main_cubicInterpolate)(p0, p1, p2, p3, si_f);
      dst[dst_pos] = image_(FromIntermediate)(value);
    }

    dst[ dst_start + (dst_len - 1) * dst_stride ] =
      src[ src_start + (src_len - 1) * src_stride ];
  }
}

static int image_(Main_scaleBilinear)(lua_State *L) {

  THTensor *Tsrc = luaT_checkudata(L, 1, torch_Tensor);
  THTensor *Tdst = luaT_checkudata(L, 2, torch_Tensor);
  THTensor *Ttmp;
  long dst_stride0, dst_stride1, dst_stride2, dst_width, dst_height;
  long src_stride0, src_stride1, src_stride2, src_width, src_height;
  long tmp_stride0, tmp_stride1, tmp_stride2, tmp_width, tmp_height;
  long i, j, k;

  image_(Main_op_validate)(L, Tsrc,Tdst);

  int ndims;
  if (Tdst->nDimension == 3) ndims = 3;
  else ndims = 2;

  Ttmp = THTensor_(newWithSize2d)(Tsrc->size[ndims-2], Tdst->size[ndims-1]);

  dst_stride0= image_(Main_op_stride)(Tdst,0);
  dst_stride1= image_(Main_op_stride)(Tdst,1);
  dst_stride2= image_(Main_op_stride)(Tdst,2);
  src_stride0= image_(Main_op_stride)(Tsrc,0);
  src_stride1= image_(Main_op_stride)(Tsrc,1);
  src_stride2= image_(Main_op_stride)(Tsrc,2);
  tmp_stride0= image_(Main_op_stride)(Ttmp,0);
  tmp_stride1= image_(Main_op_stride)(Ttmp,1);
  tmp_stride2= image_(Main_op_stride)(Ttmp,2);
  dst_width=   Tdst->size[ndims-1];
  dst_height=  Tdst->size[ndims-2];
  src_width=   Tsrc->size[ndims-1];
  src_height=  Tsrc->size[ndims-2];
  tmp_width=   Ttmp->size[1];
  tmp_height=  Ttmp->size[0];

  for(k=0;k<image_(Main_op_depth)(Tsrc);k++) {
    /* compress/expand rows first */
    for(j = 0; j < src_height; j++) {
      image_(Main_scaleLinear_rowcol)(Tsrc,
                                      Ttmp,
                                      0*src_stride2+j*src_stride1+k*src_stride0,
                                      0*tmp_stride2+j*tmp_stride1+k*tmp_stride0,
                                      src_stride2,
                                      tmp_stride2,
                                      src_width,
                                      tmp_width );

    }

    /* then columns */
    for(i = 0; i < dst_width; i++) {
      image_(Main_scaleLinear_rowcol)(Ttmp,
                                      Tdst,
                                      i*tmp_stride2+0*tmp_stride1+k*tmp_stride0,
                                      i*dst_stride2+0*dst_stride1+k*dst_stride0,
                                      tmp_stride1,
                                      dst_stride1,
                                      tmp_height,
                                      dst_height );
    }
  }
  THTensor_(free)(Ttmp);
  return 0;
}

static int image_(Main_scaleBicubic)(lua_State *L) {

  THTensor *Tsrc = luaT_checkudata(L, 1, torch_Tensor);
  THTensor *Tdst = luaT_checkudata(L, 2, torch_Tensor);
  THTensor *Ttmp;
  long dst_stride0, dst_stride1, dst_stride2, dst_width, dst_height;
  long src_stride0, src_stride1, src_stride2, src_width, src_height;
  long tmp_stride0, tmp_stride1, tmp_stride2, tmp_width, tmp_height;
  long i, j, k;

  image_(Main_op_validate)(L, Tsrc,Tdst);

  int ndims;
  if (Tdst->nDimension == 3) ndims = 3;
  else ndims = 2;

  Ttmp = THTensor_(newWithSize2d)(Tsrc->size[ndims-2], Tdst->size[ndims-1]);

  dst_stride0= image_(Main_op_stride)(Tdst,0);
  dst_stride1= image_(Main_op_stride)(Tdst,1);
  dst_stride2= image_(Main_op_stride)(Tdst,2);
  src_stride0= image_(Main_op_stride)(Tsrc,0);
  src_stride1= image_(Main_op_stride)(Tsrc,1);
  src_stride2= image_(Main_op_stride)(Tsrc,2);
  tmp_stride0= image_(Main_op_stride)(Ttmp,0);
  tmp_stride1= image_(Main_op_stride)(Ttmp,1);
  tmp_stride2= image_(Main_op_stride)(Ttmp,2);
  dst_width=   Tdst->size[ndims-1];
  dst_height=  Tdst->size[ndims-2];
  src_width=   Tsrc->size[ndims-1];
  src_height=  Tsrc->size[ndims-2];
  tmp_width=   Ttmp->size[1];
  tmp_height=  Ttmp->size[0];

  for(k=0;k<image_(Main_op_depth)(Tsrc);k++) {
    /* compress/expand rows first */
    for(j = 0; j < src_height; j++) {
      image_(Main_scaleCubic_rowcol)(Tsrc,
                                     Ttmp,
                                     0*src_stride2+j*src_stride1+k*src_stride0,
                                     0*tmp_stride2+j*tmp_stride1+k*tmp_stride0,
                                     src_stride2,
                                     tmp_stride2,
                                     src_width,
                                     tmp_width );
    }

    /* then columns */
    for(i = 0; i < dst_width; i++) {
      image_(Main_scaleCubic_rowcol)(Ttmp,
                                     Tdst,
                                     i*tmp_stride2+0*tmp_stride1+k*tmp_stride0,
                                     i*dst_stride2+0*dst_stride1+k*dst_stride0,
                                     tmp_stride1,
                                     dst_stride1,
                                     tmp_height,
                                     dst_height );
    }
  }
  THTensor_(free)(Ttmp);
  return 0;
}
/* ======== END VERBATIM ======== */

/* Entry points for the driver (snzoo). */
int torch_image_scale_float(const char *mode, THFloatTensor *src, THFloatTensor *dst) {
  lua_State L; L.arg[0] = src; L.arg[1] = dst;
  if (mode[0] == 'b' && mode[2] == 'c') return image_(Main_scaleBicubic)(&L);   /* "bicubic" */
  if (mode[0] == 'b' && mode[2] == 'l') return image_(Main_scaleBilinear)(&L);  /* "bilinear" */
  luaL_error(&L, "mode must be bicubic or bilinear");
  return 1;
}
