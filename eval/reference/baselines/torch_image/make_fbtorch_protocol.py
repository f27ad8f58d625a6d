"""Writes fixtures/images/fbtorch_protocol.json (+ /tmp/fbtorch_protocol/*.npy): the
fb.resnet.torch evaluation tensor of every photo in common.PHOTOS.

    /opt/timmvenv/bin/python eval/reference/baselines/torch_image/make_fbtorch_protocol.py

fb.resnet.torch datasets/imagenet.lua, split 'val' (opt.tenCrop false):
    input = image.load(path, 3, 'float')
    t.Compose{ t.Scale(256), t.ColorNormalize(meanstd), t.CenterCrop(224) }(input)
and dataloader.lua copies it into a torch.FloatTensor batch [N, 3, 224, 224].
"""
import hashlib
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
import torch_image as ti  # noqa: E402

OUT = os.path.join(common.IMAGES, 'fbtorch_protocol.json')
NPY = '/tmp/fbtorch_protocol'


def main():
    binary = ti.build()
    os.makedirs(NPY, exist_ok=True)
    entries = []
    for p in common.PHOTOS:
        path = os.path.join(common.IMAGES, p)
        u8 = ti.decode_u8(path)
        r = ti.fbtorch_eval(path, binary=binary)
        h, w = r['decoded_hw']
        sw_sh = ti.scale_size(w, h, 256)
        sh, sw = r['scaled_hw']
        x1, y1 = r['crop_xy']
        # the numpy port must agree bit for bit with the compiled C code
        port = ti.port_scale_bicubic(r['loaded'], sw, sh)
        assert np.array_equal(port.view(np.uint32), r['scaled'].view(np.uint32)), p
        assert not np.isnan(r['scaled']).any()
        stem = os.path.splitext(p)[0]
        np.save(os.path.join(NPY, f'{stem}.loaded.npy'), r['loaded'])
        np.save(os.path.join(NPY, f'{stem}.scaled.npy'), r['scaled'])
        np.save(os.path.join(NPY, f'{stem}.input.npy'), r['crop'][None])
        entries.append({
            'image': p,
            'decoded_hw': [h, w],
            'decoded_rgb_u8_sha256': hashlib.sha256(u8.tobytes()).hexdigest(),
            'loaded_sha256': common.sha256_f32(r['loaded']),
            'scale_call': None if sw_sh is None else
            f'image.scale(input, {sw_sh[0]}, {sw_sh[1]}, "bicubic")',
            'scaled_hw': [sh, sw],
            'scaled_sha256': common.sha256_f32(r['scaled']),
            'crop_x1_y1': [x1, y1],
            'input_shape': [1, 3, 224, 224],
            'input_sha256': common.sha256_f32(r['crop']),
            'input_mean': float(r['crop'].astype(np.float64).mean()),
            'input_samples': {'[0,0,0,0]': float(r['crop'][0, 0, 0]),
                              '[0,1,111,112]': float(r['crop'][1, 111, 112]),
                              '[0,2,223,223]': float(r['crop'][2, 223, 223])},
        })
        print(f'{p:28s} {h}x{w} -> {sh}x{sw} crop x1={x1} y1={y1}')

    doc = {
        'what': ("fb.resnet.torch evaluation input (datasets/imagenet.lua, split 'val', "
                 "single center crop): image.load(path, 3, 'float') -> t.Scale(256) "
                 "[image.scale bicubic] -> t.ColorNormalize(mean, std) -> t.CenterCrop(224)."),
        'sources': {
            'fb.resnet.torch': 'facebookarchive/fb.resnet.torch@985e569d468d23baeef5b952954dcdf3c61c5e73 '
                               'datasets/imagenet.lua, datasets/transforms.lua',
            'torch/image': 'torch/image@5aa18819b6a7b44751f8a858bd232d1c07b67985 init.lua, '
                           'generic/image.c, generic/jpeg.c, generic/png.c',
            'torch7': 'torch/torch7@814ea4afd6beb110705d2456de03876841fcf1fd generic/Tensor.c, '
                      'lib/TH/generic/THTensorMath.c, lib/TH/generic/THVectorDefault.c',
        },
        'generated_by': 'eval/reference/baselines/torch_image/make_fbtorch_protocol.py',
        'steps': [
            "decode: 8-bit samples; JPEG via libjpeg defaults (ISLOW DCT, fancy upsampling), PNG "
            "via libpng (palette expanded); here PIL Image.open(p).convert('RGB'), verified "
            "byte-identical to libjpeg62-turbo 2.1.5 / libpng 1.6.39 decoding the torch/image "
            "way for all these files (torch_image.py --check-decode). image.load(path, 3): gray "
            "-> 3 copies, RGBA -> first 3 channels (alpha dropped).",
            "to float: FloatTensor of the samples, then img:mul(1/255): x * c in float32 with "
            "c = (float)(1.0/255.0) (NOT x / 255: differs for 126 of the 256 byte values).",
            "Scale(256): skip if the short side is already 256 (w <= h and w == 256, or h <= w "
            "and h == 256); if w < h: image.scale(img, 256, (h/w)*256, 'bicubic') else "
            "image.scale(img, (w/h)*256, 256, 'bicubic'); the non-integer size is truncated "
            "toward zero (src.new(c, height, width) -> luaL_checklong -> (long)n on 64-bit "
            "LuaJIT); for size 256 this equals floor(long*256/short) in integers.",
            "bicubic: torch/image Main_scaleBicubic, see torch_image_scale.json / the report: "
            "align-corners mapping, a = -0.5 Catmull-Rom-style kernel with linear extrapolation "
            "at the borders, horizontal pass first, float32 intermediate, no clamping, no "
            "antialiasing.",
            "ColorNormalize: on the whole scaled image, per channel i: x = x + (float)(-mean[i]); "
            "x = x / (float)std[i] (two float32 ops, in that order); mean {0.485, 0.456, 0.406}, "
            "std {0.229, 0.224, 0.225}.",
            "CenterCrop(224): x1 = ceil((W-224)/2), y1 = ceil((H-224)/2); rows [y1, y1+224), "
            "columns [x1, x1+224) (image.crop end-exclusive, 0-based).",
        ],
        'sha256': 'common.sha256_f32 (float32 C-order bytes); input_sha256 = the [1,3,224,224] '
                  '(same bytes as [3,224,224]) tensor; scaled_sha256 = the [3,H,W] float32 image '
                  'after Scale(256), before ColorNormalize; loaded_sha256 = image.load output '
                  '[3,h,w].',
        'npy': f'{NPY}/<stem>.{{loaded,scaled,input}}.npy (not in the repository)',
        'photos': entries,
    }
    common.write_json(OUT, doc)
    print(f'wrote {OUT} ({os.path.getsize(OUT)} bytes)')


if __name__ == '__main__':
    main()
