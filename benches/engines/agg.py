import re,glob,statistics as st,collections
rows=collections.defaultdict(list)
for f in sorted(glob.glob("bench-r*.txt")):
    for l in open(f):
        m=re.search(r"variant=(\S+) threads=(\d) load1=([\d.]+)->([\d.]+) RESULT (.*)",l)
        if not m: continue
        d=dict(kv.split("=") for kv in m.group(5).split())
        d={k:float(v) for k,v in d.items()}
        d["load"]=(float(m.group(3))+float(m.group(4)))/2
        rows[m.group(1)].append(d)
keys=["prefill128","prefill512","decode","ttft_ms","load_ms","peak_rss_mb","cpu_prefill128_tok_per_cpu_s","cpu_decode_tok_per_cpu_s"]
print("variant n "+" ".join(keys)+" load(min-max)")
for v in sorted(rows):
    rs=rows[v]
    out=[]
    for k in keys:
        xs=[r[k] for r in rs if k in r]
        out.append(f"{st.median(xs):.1f}" + (f"[{min(xs):.0f}-{max(xs):.0f}]" if len(xs)>1 and k in ('decode','prefill128') else "") if xs else "-")
    ls=[r["load"] for r in rs]
    print(v,len(rs)," ".join(out),f"{min(ls):.1f}-{max(ls):.1f}")
