# Reusable neuromap rules. `include:` this file from your own Snakefile and set in `config`:
#   reference:  path to the reference FASTA
#   samples:    {sample name: [reads.fq.gz]} single-end, or [R1.fq.gz, R2.fq.gz] paired-end
#   outdir:     where {sample}.bam and {sample}.bam.bai go
#   scatter:    read chunks per sample aligned as separate jobs (1 = no scatter)
#   threads:    worker threads per alignment job
#   extra:      more `neuromap align` options, e.g. "--no-neural", or "--server auto" (the
#               alignment jobs on a machine share one loaded network: README, `--server auto`)
import os

NEUROMAP_OUT = config.get("outdir", "results")
NEUROMAP_SCATTER = int(config.get("scatter", 1))
NEUROMAP_INDEX = os.path.join(NEUROMAP_OUT, "index", "reference.nmi")

for _sample, _files in config["samples"].items():
    if isinstance(_files, str):
        config["samples"][_sample] = [_files]
    elif len(_files) not in (1, 2):
        raise ValueError(
            f"sample {_sample!r}: {len(_files)} FASTQ files given; give one (single-end) "
            "or two (R1 and R2 of paired-end reads)"
        )


def neuromap_reads(wildcards):
    return config["samples"][wildcards.sample]


def neuromap_paired(wildcards):
    return len(config["samples"][wildcards.sample]) == 2


rule neuromap_index:
    input:
        config["reference"],
    output:
        directory(NEUROMAP_INDEX),
    log:
        os.path.join(NEUROMAP_OUT, "logs", "index.log"),
    resources:
        mem_mb=4000,
    shell:
        "neuromap index {input} -o {output} 2> {log}"


rule neuromap_scatter:
    input:
        neuromap_reads,
    output:
        temp(expand(os.path.join(NEUROMAP_OUT, "chunks", "{{sample}}", "{chunk}.fq.gz"), chunk=range(NEUROMAP_SCATTER))),
    log:
        os.path.join(NEUROMAP_OUT, "logs", "{sample}.scatter.log"),
    params:
        script=os.path.join(workflow.basedir, "scripts", "split_fastq.py"),
        # Pairs are checked in lockstep and each chunk holds them interleaved (aligned with -p).
        pairs=lambda wc: "--pairs" if neuromap_paired(wc) else "",
    shell:
        "python {params.script} {params.pairs} {input} {output} 2> {log}"


rule neuromap_align:
    input:
        index=NEUROMAP_INDEX,
        reference=config["reference"],
        reads=os.path.join(NEUROMAP_OUT, "chunks", "{sample}", "{chunk}.fq.gz"),
    output:
        bam=temp(os.path.join(NEUROMAP_OUT, "chunks", "{sample}", "{chunk}.bam")),
        bai=temp(os.path.join(NEUROMAP_OUT, "chunks", "{sample}", "{chunk}.bam.bai")),
    log:
        os.path.join(NEUROMAP_OUT, "logs", "{sample}.{chunk}.align.log"),
    threads: int(config.get("threads", 2))
    resources:
        mem_mb=6000,
    params:
        extra=config.get("extra", ""),
        rg=lambda wc: f"@RG\\tID:{wc.sample}\\tSM:{wc.sample}",
        pairs=lambda wc: "-p" if neuromap_paired(wc) else "",
    shell:
        "neuromap align -t {threads} --index {input.index} -R '{params.rg}' {params.pairs} {params.extra} "
        "{input.reference} {input.reads} -o {output.bam} 2> {log}"


rule neuromap_merge:
    input:
        lambda wc: expand(os.path.join(NEUROMAP_OUT, "chunks", wc.sample, "{chunk}.bam"), chunk=range(NEUROMAP_SCATTER)),
    output:
        bam=os.path.join(NEUROMAP_OUT, "{sample}.bam"),
        bai=os.path.join(NEUROMAP_OUT, "{sample}.bam.bai"),
    log:
        os.path.join(NEUROMAP_OUT, "logs", "{sample}.merge.log"),
    threads: 2
    run:
        import pysam

        tmp = output.bam + ".tmp.bam"
        # Each chunk is coordinate-sorted; merging keeps the order (samtools merge via pysam).
        pysam.merge("-f", "-c", "-p", "-@", str(threads), tmp, *input)
        pysam.index(tmp)
        os.replace(tmp + ".bai", output.bai)
        os.replace(tmp, output.bam)
