#!/usr/bin/env python3
"""Which crates own the resident code pages of a running process.

Usage (root, for /proc/PID/pagemap): benches/rss-pagemap.py PID BINARY
Reads which pages of the executable mappings of BINARY are present, maps
them to symbols with nm, and prints KiB per crate (BENCHMARKS.md, "Idle
memory").
"""
import bisect
import collections
import re
import struct
import subprocess
import sys

if len(sys.argv) != 3:
    sys.exit("usage: benches/rss-pagemap.py PID BINARY (as root)")
pid=int(sys.argv[1]); binpath=sys.argv[2]
maps=[l.split() for l in open(f'/proc/{pid}/maps') if l.rstrip().endswith(binpath)]
base=int(maps[0][0].split('-')[0],16)  # first mapping = offset 0
f=open(f'/proc/{pid}/pagemap','rb')
present=[]
for m in maps:
    lo,hi=[int(x,16) for x in m[0].split('-')]
    if 'x' not in m[1]: continue
    f.seek(lo//4096*8); data=f.read((hi-lo)//4096*8)
    for i in range((hi-lo)//4096):
        (v,)=struct.unpack_from('<Q',data,i*8)
        if v>>63: present.append(lo+i*4096-base)
# symbols (vaddr in file; PIE so vaddr==offset-ish for text? use nm values, which are link addresses; PIE base 0)
out=subprocess.run(['nm','-n','-C','--defined-only',binpath],capture_output=True,text=True).stdout
syms=[]
for l in out.splitlines():
    p=l.split(' ',2)
    if len(p)<3 or p[1] not in 'tTwW': continue
    syms.append((int(p[0],16),p[2]))
addrs=[a for a,_ in syms]
# text segment: file offset vs vaddr; read program headers
ph=subprocess.run(['readelf','-lW',binpath],capture_output=True,text=True).stdout
loads=[l.split() for l in ph.splitlines() if l.strip().startswith('LOAD')]
def off2va(off):
    for L in loads:
        o=int(L[1],16); va=int(L[2],16); fs=int(L[4],16)
        if o<=off<o+fs: return va+off-o
    return None
cnt=collections.Counter()
for off in present:
    va=off2va(off)
    if va is None: continue
    # count symbols in this page by crate
    i=bisect.bisect_right(addrs,va)-1
    j=bisect.bisect_left(addrs,va+4096)
    names=set()
    for k in range(max(i,0),j):
        n=syms[k][1]
        m=re.match(r'(?:<)?(?:_<)?([A-Za-z_][A-Za-z0-9_]*)::',n)
        names.add(m.group(1) if m else ('C:'+n.split('(')[0][:20] if not '::' in n else n[:20]))
    for n in names: cnt[n]+=4096/len(names)
print(len(present)*4, 'KiB present')
for n,c in cnt.most_common(30): print(int(c/1024),'KiB',n)
