"""Markdown tables from bench_compare.sh's JSON lines (eval/results/bench_compare.jsonl).

    python3 eval/reference/bench_table.py eval/results/bench_compare.jsonl
"""
import json
import sys


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith('{')]
    cells = {}
    for r in rows:
        if 'torch' in r:
            side = ('torch ' + r['torch'].split('+')[0].split('a')[0], r['dtype'])
        else:
            side = ('snzoo plain' if r.get('sn_kernel') == 'plain candle ops' else 'snzoo', r['dtype'])
        cells[(r['arch'], r['batch_size'], side)] = r
    archs = list(dict.fromkeys(r['arch'] for r in rows))
    batches = sorted({r['batch_size'] for r in rows})
    torch2 = next((s for (_, _, s) in cells if s[0].startswith('torch 2') and s[1] == 'f32'), None)
    torch2_bf16 = next((s for (_, _, s) in cells if s[0].startswith('torch 2') and s[1] == 'bf16'), None)
    torch1 = next((s for (_, _, s) in cells if s[0].startswith('torch 1') and s[1] == 'f32'), None)
    snz, plain = ('snzoo', 'f32'), ('snzoo plain', 'f32')
    cols = [('snzoo f32', snz), ('snzoo bf16', ('snzoo', 'bf16')), ('snzoo plain ops f32', plain)]
    for label, side in (('PyTorch %s f32' % (torch2 or ('', ''))[0][6:], torch2),
                        ('PyTorch %s bf16' % (torch2_bf16 or ('', ''))[0][6:], torch2_bf16),
                        ('PyTorch %s f32' % (torch1 or ('', ''))[0][6:], torch1)):
        if side:
            cols.append((label, side))
    head = ['arch', 'batch'] + ['%s (img/s)' % c for c, _ in cols]
    if torch2:
        head.append('snzoo / PyTorch %s f32' % torch2[0][6:])
    head.append('peak RSS MB (%s)' % ' / '.join(c for c, _ in cols))
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for arch in archs:
        for b in batches:
            line = [arch, str(b)]
            for _, side in cols:
                r = cells.get((arch, b, side))
                line.append('%.2f' % r['images_per_second'] if r else '')
            if torch2:
                a, t = cells.get((arch, b, snz)), cells.get((arch, b, torch2))
                line.append('**%.2f×**' % (a['images_per_second'] / t['images_per_second']) if a and t else '')
            mem = []
            for _, side in cols:
                r = cells.get((arch, b, side))
                mem.append('%.0f' % (r['peak_rss_bytes'] / 1e6) if r and r.get('peak_rss_bytes') else '–')
            line.append(' / '.join(mem))
            if any(line[2:-1]):
                print('| ' + ' | '.join(line) + ' |')


if __name__ == '__main__':
    main()
