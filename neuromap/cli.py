"""The `neuromap` command: parsing only; the work is in the library modules."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time

import click

from neuromap import __version__, trace
from neuromap.errors import NeuromapError, OutputClosed, Terminated
from neuromap.threads import single_threaded_blas

single_threaded_blas()  # before numpy is imported (by the commands, lazily): neuromap/threads.py

PRESETS = {"sr": {}}  # short reads; the defaults below are tuned for it


# From this many workers on, `align` makes them processes unless told (--no-processes): on the
# 16-core GPU machine processes were 1.1-1.7 x faster than threads (single-end and paired, network
# on and off: benchmarks/README.md), on 2 cores threads are a little faster; between the two it is
# not measured.
AUTO_PROCESSES = 8


def _on_sigterm(signum, frame):
    raise Terminated()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="neuromap")
def cli():
    """neuromap: short-read DNA aligner (minimizer seeds, a trained network over the candidate
    windows, banded DP, calibrated MAPQ; single-end and paired-end).

    \b
    Typical use:
      neuromap index ref.fa
      neuromap align ref.fa reads.fq.gz -o sample.bam
      neuromap align ref.fa reads.fq | samtools sort -o sample.bam
      neuromap align ref.fa R1.fq.gz R2.fq.gz -o sample.bam     (paired-end)
    """


@cli.command()
@click.argument("reference", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "prefix", metavar="PREFIX", help="Write the index to PREFIX.nmi instead of REFERENCE.nmi.")
@click.option("-k", "kmer", type=int, default=21, show_default=True, help="Minimizer k-mer length (5-31).")
@click.option("-w", "window", type=int, default=11, show_default=True, help="Minimizer window: one minimizer per w consecutive k-mers.")
@click.option("--progress/--quiet", default=None, help="Progress bar on stderr (default: when stderr is a terminal); --quiet also drops the summary line.")
def index(reference, prefix, kmer, window, progress):
    """Build the minimizer index of REFERENCE (FASTA, plain or gzip).

    The index is a directory REFERENCE.nmi (numpy arrays loaded memory-mapped, plus meta.json with
    the format version, k, w, contigs and a SHA-256 of the reference). `align` finds it by itself.
    """
    from neuromap.index import build_index, load_index

    show = sys.stderr.isatty() if progress is None else progress
    path = build_index(reference, prefix, k=kmer, w=window, show_progress=show)
    idx = load_index(path)
    if progress is not False:
        click.echo(
            f"neuromap: indexed {len(idx.names)} contigs, {int(idx.contig_lengths.sum())} bp, "
            f"{idx.meta['n_minimizers']} minimizers (k={idx.k}, w={idx.w}) -> {path}",
            err=True,
        )


@cli.command()
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("reads", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("mates", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-p", "--interleaved", is_flag=True, help="READS holds pairs, each read followed by its mate (bwa's -p).")
@click.option("-I", "--insert-size", metavar="MEAN[,STD]", help="Insert size of pairs in bp (STD defaults to 10 % of MEAN). Default: estimated from the first pairs and reported on stderr.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE: .bam is coordinate-sorted and indexed (.bai), anything else is SAM. Default: SAM on stdout.")
@click.option("-t", "--threads", type=click.IntRange(1, 256), default=1, show_default=True, help="Worker threads that parse and map batches in parallel while the input is cut into batches (the output does not depend on it).")
@click.option("--processes/--no-processes", default=None, help=f"Make the -t workers processes instead of threads (default: processes from -t {AUTO_PROCESSES} up, threads below). Threads share Python's GIL, which the per-read work holds, and leave cores idle on many-core machines; each process holds its own Python, numpy and kernels (more memory), and the network has one process of its own, which runs the workers' model calls on its device (the main process only reads and writes). Same output either way.")
@click.option("-x", "--preset", type=click.Choice(sorted(PRESETS)), default="sr", show_default=True, help="Preset: sr = short Illumina reads, single or paired.")
@click.option("-R", "--read-group", metavar="STR", help=r"Read group header line, e.g. '@RG\tID:x\tSM:y'; its ID goes on every record as RG:Z.")
@click.option("--index", "index_path", metavar="PATH", help="Use the index at PATH (default: REFERENCE.nmi, built if missing, rebuilt if stale).")
@click.option("--no-neural", is_flag=True, help="Place reads and compute MAPQ by seeds and banded DP only, without the network.")
@click.option("--weights", "weights_dir", metavar="DIR", type=click.Path(file_okay=False), help="Use the model in DIR (from `neuromap train` + `neuromap calibrate`) instead of the shipped one.")
@click.option("--server", "server_path", metavar="SOCKET", envvar="NEUROMAP_SERVER", help="Run the network in the `neuromap serve SOCKET` already running on this machine (loaded, on its device, compiled by earlier runs) instead of loading it for this run: saves the network's start (about 1 s, on 2 CPU cores as on the GPU machine). Same output. `--server auto`: this user's server for this model, started by the first run that asks for it (in $XDG_RUNTIME_DIR/neuromap, else $TMPDIR/neuromap-UID) and ending after 300 s without a run (NEUROMAP_SERVER_IDLE_EXIT); for pipelines that map many samples or chunks one after another. Default: $NEUROMAP_SERVER; ignored with --no-neural.")
@click.option("-N", "--max-candidates", type=click.IntRange(1, 64), default=8, show_default=True, help="Candidate placements per read aligned by the DP.")
@click.option("--max-occ", type=click.IntRange(1), default=500, show_default=True, help="Ignore minimizers occurring more often than this in the reference.")
@click.option("-A", "match", type=click.IntRange(1), default=1, show_default=True, help="Match score.")
@click.option("-B", "mismatch", type=click.IntRange(0), default=4, show_default=True, help="Mismatch penalty.")
@click.option("-O", "gap_open", type=click.IntRange(0), default=6, show_default=True, help="Gap open penalty (a gap of length l costs O + l*E).")
@click.option("-E", "gap_extend", type=click.IntRange(1), default=1, show_default=True, help="Gap extension penalty.")
@click.option("-L", "clip", type=click.IntRange(0), default=5, show_default=True, help="Clipping penalty (soft clip instead of aligning to the read's end).")
@click.option("-T", "min_score", type=int, default=30, show_default=True, help="Reads whose best alignment scores below this are reported unmapped.")
@click.option("--band", type=click.IntRange(1, 31), default=16, show_default=True, help="DP band half-width: longest indel aligned (longer ones are clipped).")
@click.option("-K", "--batch-size", type=click.IntRange(1), default=4000, show_default=True, help="Reads per batch (pairs: mates counted, so half as many pairs).")
@click.option("--stats", "stats_path", metavar="FILE.json", help="Write the run's figures (reads, mapped %, MAPQ>=30 %, properly paired %, reads/s, device) as JSON.")
@click.option("--progress/--quiet", default=None, help="Progress bar and summary on stderr (default: bar only when stderr is a terminal, summary always; --quiet: neither).")
def align(reference, reads, mates, interleaved, insert_size, output, threads, processes, preset, read_group, index_path, no_neural, weights_dir, server_path,
          max_candidates, max_occ, match, mismatch, gap_open, gap_extend, clip, min_score, band, batch_size, stats_path, progress):
    """Align READS (FASTQ or FASTA, plain or gzip; '-' for stdin) to REFERENCE; with MATES too,
    READS and MATES are the two files of paired-end reads (R1 and R2), read in lockstep.

    By default the NeuralReadMapper scores the candidate windows of each read that has more than
    one, chooses the window and the start, and gives P(correct) and MAPQ; the banded DP describes
    the placement (CIGAR, NM, MD, AS).
    Writes SAM with MAPQ and the tags NM, MD, AS, XS (runner-up score) and pc (P(correct));
    unmapped reads are kept with flag 4. Pairs are placed jointly (each mate's likelihood times
    the insert-size likelihood), a mate without a good placement is searched for where its partner
    points, and records carry mate fields, TLEN and the tags MC and MQ.

    \b
    Environment variables (optional):
      NEUROMAP_COMPUTE_DTYPE  the network's arithmetic: float32 (default), bfloat16, float16
      NEUROMAP_PAIR_BUCKET    (read, window) pairs per model call (16 on a CPU, 1024 on a GPU)
      NEUROMAP_JAX_CACHE      the exported network and its compiled programs (default ~/.cache/neuromap/jax)
      NEUROMAP_DEVICE_EARLY   0: the network's process (--processes) starts CUDA only when JAX does
      NEUROMAP_PRELOAD_PROGRAMS  1: after the first call's, load the compiled calls earlier runs
                              kept (default on a GPU), 0: each when its first call comes (on a CPU)
      NEUROMAP_SPARE_WORKERS  worker processes beyond -t that compute while others wait for the network
                              (--processes with the network; default 0; for a GPU: try -t)
      NEUROMAP_PARK_BATCHES   batches a worker process may set aside, mapped up to the network, while
                              the network's process starts (--processes with the network; default 0)
      NEUROMAP_PARK_STEADY    the same once it has started: batches set aside, each waiting for a model
                              call's answer, while the worker maps the next (default 0)
      NEUROMAP_SERVER         SOCKET or auto: as --server
      NEUROMAP_SERVER_IDLE_EXIT  seconds an auto server waits for another run before it ends (300)
      NEUROMAP_TRACE          PREFIX: each process writes a timeline to PREFIX.PID (benchmarks/timeline.py)
      MALLOC_ARENA_MAX        glibc malloc arenas (default here: -t + 2)
    """
    trace.check()
    trace.event("align")
    if processes is None:
        processes = threads >= AUTO_PROCESSES
    processes = processes and threads > 1  # one worker is this process itself
    server = None
    server_path = server_path or None
    if processes and not no_neural:
        from neuromap.model_process import park_batches, park_steady, spare_workers

        spare = spare_workers()  # worker processes beyond -t that compute while others wait for the network
        park = park_batches()  # batches a worker may park while the network's process starts
        steady = park_steady()  # and while it waits for a model call, after
    else:
        spare = park = steady = 0
    if not no_neural and server_path:
        # The network is in a `neuromap serve` (with `auto`, this user's for this model, started
        # now if none runs): check now that it answers and can run this model.
        from neuromap.model import ServerModel
        from neuromap.model_process import AUTO_SERVER, auto_server_file, check_weights, ensure_auto_server

        check_weights(weights_dir)
        for attempt in (1, 2):
            path = ensure_auto_server(weights_dir) if server_path == AUTO_SERVER else server_path
            probe = ServerModel(path, weights_dir)
            try:
                probe.info()
                break
            except NeuromapError as exc:
                # An auto server may end (idle) just as this run found it: start another, once.
                if server_path != AUTO_SERVER:
                    raise
                if attempt == 2:
                    raise NeuromapError(f"{exc} (its messages: {auto_server_file(path, '.log')})") from None
            finally:
                probe.close()
        server_path = path
    elif not no_neural and processes:
        # The network's process (model_process.ModelServer) first: its start (importing JAX, starting the
        # device, loading the network: 1.2-1.7 s on the GPU machine) then overlaps the rest of
        # this one's. Ended at once if the run ends before handing it to align_records.
        from neuromap.model_process import ModelServer, check_weights

        check_weights(weights_dir)
        server = ModelServer(weights_dir, threads + spare)
        click.get_current_context().call_on_close(lambda: server.close(wait=False))
    if processes:
        from neuromap.threads import start_worker_server

        start_worker_server()  # the workers' fork server, importing the pipeline meanwhile

    from neuromap.align import Scoring
    from neuromap.index import open_index
    from neuromap.io.fastx import fastq_batches, fastq_pair_batches
    from neuromap.io.sam import SamSink, header_text, parse_read_group
    from neuromap.pairing import parse_insert
    from neuromap.pipeline import AlignOptions, RunStats, align_records, keep_freed_buffers, limit_malloc_arenas
    from neuromap.seed import SeedParams

    rg_line, rg_id = parse_read_group(read_group) if read_group else (None, None)
    for path in (reads, mates):
        if path is not None and path != "-" and not os.path.exists(path):
            raise NeuromapError(f"{path}: no such file")
    if interleaved and mates:
        raise click.UsageError("-p (interleaved pairs in READS) cannot be combined with a MATES file")
    if insert_size and not (interleaved or mates):
        raise click.UsageError("-I applies to paired reads (give MATES, or -p)")
    paired = bool(mates) or interleaved
    opts = AlignOptions(
        seed=SeedParams(max_candidates=max_candidates, max_occ=max_occ),
        scoring=Scoring(match=match, mismatch=mismatch, gap_open=gap_open, gap_extend=gap_extend, clip=clip),
        margin=band,
        min_score=min_score,
        batch_size=batch_size,
        threads=threads,
        processes=processes,
        read_group_id=rg_id,
        neural=not no_neural,
        weights_dir=weights_dir,
        paired=paired,
        insert=parse_insert(insert_size) if insert_size else None,
        server=server_path if not no_neural else None,
        spare_workers=spare,
        park_batches=park,
        park_steady=steady,
    )
    limit_malloc_arenas(threads)  # before the first thread starts
    if processes:
        keep_freed_buffers()  # this process then only hands batches out and takes their SAM back
    if opts.neural and server is None and opts.server is None:  # with a model process or a server, theirs
        from neuromap.model import preload
        from neuromap.model_process import check_weights

        check_weights(weights_dir)
        preload(weights_dir)
    if stats_path:
        parent = os.path.dirname(os.path.abspath(stats_path))
        if not os.path.isdir(parent):
            raise NeuromapError(f"{stats_path}: output directory {parent} does not exist")
    sink = SamSink(output, threads=threads)
    if (output is None or output == "-") and not processes:
        # `| head` ends us quietly, as for C tools. Worker processes would be left behind by such
        # a sudden end: with them, the closed pipe is a BrokenPipeError, handled in main().
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    show_bar = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    totals = RunStats()
    try:
        idx = open_index(reference, index_path)
        command_line = "neuromap " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        header = header_text(idx.names, idx.contig_lengths, idx.md5, command_line, rg_line).encode()
        with progress_bar(show_bar) as (bar, note_line):
            # The header goes out with the first batch, so input that is bad from its first record
            # leaves no SAM at all, not even on stdout.
            # The FASTQ is only cut into batches of whole records here; the workers (threads or
            # processes) parse their own, with the same checks and errors as a record-by-record read.
            batches = (fastq_pair_batches(reads, mates, max(1, opts.batch_size // 2)) if mates or interleaved
                       else fastq_batches(reads, opts.batch_size))

            def on_insert(model, samples):
                if progress is not False:
                    note = model.describe() if model else (
                        f"too few uniquely placed pairs ({samples}) to estimate the insert size; mates placed on their own (give -I)")
                    note_line(f"neuromap: {note}")

            for text, figures in align_records(batches, idx, opts, on_insert, model_server=server):
                sink.write(header + text)
                header = b""
                totals.add(figures)
                bar.update(figures.reads)
        sink.write(header)
        sink.commit()
        trace.event("committed")
    finally:
        sink.discard()
    seconds = time.perf_counter() - started
    summary = run_summary(totals, seconds, opts.neural)
    summary["workers"] = (f"{threads} {'processes' if processes else 'threads'}" + (f" (+{spare} spare)" if spare else "")
                          + (f", up to {park} batches each parked while the network starts" if park and not opts.server else "")
                          + (f", up to {steady} parked while waiting for the network" if steady and not opts.server else ""))
    if progress is not False:
        click.echo(
            f"neuromap: {summary['reads']} reads, {summary['mapped_pct']:.2f} % mapped, "
            f"{summary['mapq30_pct']:.2f} % at MAPQ >= 30, "
            + (f"{summary['properly_paired_pct']:.2f} % properly paired, " if totals.paired else "")
            + f"{summary['reads_per_second']:.0f} reads/s "
            f"({summary['placement']}, {summary['device']})",
            err=True,
        )
    if stats_path:
        write_json_atomic(stats_path, summary)
    global _END_NOW
    _END_NOW = "processes" if processes else "threads"


@cli.command()
@click.argument("socket_path", metavar="SOCKET", type=click.Path(dir_okay=False))
@click.option("--weights", "weights_dir", metavar="DIR", type=click.Path(file_okay=False), help="Load the model in DIR now instead of the shipped one (a client's --weights loads its own model on first use).")
@click.option("--idle-exit", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="End after SECONDS with no client connected (default: run until Ctrl-C or SIGTERM).")
def serve(socket_path, weights_dir, idle_exit):
    """Keep the network loaded on its device for `neuromap align --server SOCKET` runs.

    Loads the model (JAX, the device, the weights), listens on the Unix socket SOCKET (created
    readable and writable by you only) and runs the network for every `align --server SOCKET` on
    this machine, several at once. Each run then skips the network's start, and the compiled shapes
    stay warm from run to run. The output is byte-identical to a run without the server; a client
    whose neuromap code or NEUROMAP_COMPUTE_DTYPE differs from the server's is refused with an
    error. Runs in the foreground until Ctrl-C or SIGTERM (or --idle-exit), then removes SOCKET.
    (`align --server auto` starts one by itself where none runs, and later runs find it.)

    \b
    Example:
      neuromap serve /tmp/neuromap.sock &
      export NEUROMAP_SERVER=/tmp/neuromap.sock      (or: align --server /tmp/neuromap.sock)
      for s in A B C; do neuromap align -t 8 ref.fa $s.R1.fq.gz $s.R2.fq.gz -o $s.bam; done
      kill %1
    """
    from neuromap.model_process import serve_socket

    try:
        serve_socket(socket_path, weights_dir, idle_exit, lambda text: click.echo(text, err=True))
    except (KeyboardInterrupt, Terminated):
        pass
    click.echo(f"neuromap: server at {socket_path} stopped", err=True)


@cli.command()
@click.argument("reference", type=click.Path(dir_okay=False))
@click.option("-n", "--reads", "n_reads", type=click.IntRange(1), default=10000, show_default=True, help="Number of reads.")
@click.option("-l", "--length", "read_length", type=click.IntRange(1), default=150, show_default=True, help="Read length.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same reads).")
@click.option("-o", "--output", required=True, metavar="FASTQ", help="Reads (FASTQ; gzip when it ends in .gz).")
@click.option("--truth", required=True, metavar="TSV", help="True origins: name, contig, start (0-based), end, strand.")
@click.option("-e", "--error-rate", type=float, default=0.01, show_default=True, help="Mean sequencing error rate per base.")
@click.option("--indel-fraction", type=float, default=0.05, show_default=True, help="Fraction of sequencing errors that are 1-bp indels.")
@click.option("--snp-rate", type=float, default=0.0, show_default=True, help="SNP rate of the simulated sample against the reference.")
@click.option("--indel-rate", type=float, default=0.0, show_default=True, help="Rate of small (1-5 bp) indel variants.")
@click.option("--prefix", default="sim", show_default=True, help="Read name prefix.")
@click.option("-2", "--mate2", metavar="FASTQ", help="Simulate FR pairs: mate 1 goes to -o, mate 2 here, -n counts pairs; names end in /1 and /2.")
@click.option("--fragment-mean", type=float, default=400.0, show_default=True, help="Mean fragment (insert) length of pairs.")
@click.option("--fragment-std", type=float, default=50.0, show_default=True, help="Standard deviation of the fragment length.")
def simulate(reference, n_reads, read_length, seed, output, truth, error_rate, indel_fraction, snp_rate, indel_rate, prefix, mate2, fragment_mean, fragment_std):
    """Simulate Illumina-like reads (or pairs, with --mate2) from REFERENCE with known origins."""
    from neuromap.simulate import simulate_pairs, simulate_reads, write_simulation

    for path in (output, truth) + ((mate2,) if mate2 else ()):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise NeuromapError(f"{path}: output directory {parent} does not exist")
    if mate2:
        pairs = simulate_pairs(reference, n_reads, read_length, seed, fragment_mean, fragment_std, error_rate, indel_fraction, snp_rate, indel_rate, prefix)
        n = write_simulation(pairs, output, truth, mate2)
        click.echo(f"neuromap: simulated {n} pairs -> {output}, {mate2}, truth -> {truth}", err=True)
        return
    reads = simulate_reads(reference, n_reads, read_length, seed, error_rate, indel_fraction, snp_rate, indel_rate, prefix)
    n = write_simulation(reads, output, truth)
    click.echo(f"neuromap: simulated {n} reads -> {output}, truth -> {truth}", err=True)


@cli.command()
@click.argument("alignments", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--truth", required=True, type=click.Path(dir_okay=False), help="Truth TSV from `neuromap simulate`.")
@click.option("--tolerance", type=click.IntRange(0), default=10, show_default=True, help="Allowed distance (bp) of the unclipped start from the true start.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--plot", metavar="PNG", help="Draw the mapeval and calibration curves of every file into PNG (needs matplotlib).")
def evaluate(alignments, truth, tolerance, as_json, plot):
    """Score ALIGNMENTS (SAM or BAM files) against known read origins (like paftools.js mapeval)."""
    from neuromap.evaluate import evaluate as run_eval, format_report, plot as draw, to_json

    if plot and not os.path.isdir(os.path.dirname(os.path.abspath(plot))):
        raise NeuromapError(f"{plot}: output directory {os.path.dirname(os.path.abspath(plot))} does not exist")
    results = [run_eval(truth, path, tolerance) for path in alignments]
    for res in results:
        click.echo(to_json(res) if as_json else format_report(res), nl=False)
    if plot:
        draw(results, plot)


@cli.command()
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="Directory for checkpoint.msgpack, history.json, params.npz and config.json (resumes if a checkpoint is there).")
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Reads per step (each with --windows-per-read windows).")
@click.option("--windows-per-read", type=click.IntRange(2), default=4, show_default=True, help="Windows scored per read: the true one, near paralogs (all but 3; at least 1), a diverged paralog, a foreign window.")
@click.option("--lr", "learning_rate", type=float, default=2e-3, show_default=True, help="Peak learning rate (warm-up, then cosine decay).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial weights and of the generated examples.")
@click.option("--validate-every", type=click.IntRange(1), default=250, show_default=True, help="Steps between validation (and checkpoints).")
@click.option("--embedding-dim", type=click.IntRange(1), default=32, show_default=True, help="Model width D.")
@click.option("--num-heads", type=click.IntRange(1), default=4, show_default=True, help="Attention heads.")
@click.option("--num-layers", type=click.IntRange(0), default=1, show_default=True, help="Cross-attention blocks.")
@click.option("--dropout", type=float, default=0.0, show_default=True, help="Dropout rate while training.")
@click.option("--read-length", type=click.IntRange(1), default=320, show_default=True, help="Longest read the model accepts in one piece.")
@click.option("--reference-window", type=click.IntRange(1), default=400, show_default=True, help="Longest reference window the model accepts.")
@click.option("--min-read-length", type=click.IntRange(10), default=50, show_default=True, help="Shortest training read (longest: 150).")
@click.option("--near-paralog", nargs=2, type=float, default=(0.01, 0.04), show_default=True, metavar="LO HI", help="Divergence range of the near-identical paralog window.")
@click.option("--base-identity/--no-base-identity", default=False, show_default=True, help="Add a learned weight x [read base == reference base] to the scoring cross-attention's logits.")
@click.option("--max-error-rate", type=click.FloatRange(0, 0.5), default=0.03, show_default=True, help="Each training read's sequencing error rate is drawn from 0 to this.")
@click.option("--max-snp-rate", type=click.FloatRange(0, 0.5), default=0.01, show_default=True, help="Each training read's sample differs from its window by SNPs at a rate drawn from 0 to this.")
@click.option("--position-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True, help="Share of the start-position target put on the starts 1 bp either side of the true one (0: all on the true start).")
@click.option("--genome", "genomes", multiple=True, type=click.Path(dir_okay=False), metavar="FASTA", help="A real genome (FASTA, may be gzipped) to draw training windows from; repeatable. benchmarks/debian_genomes.sh fetches the phage and mitochondrial genomes of Debian's packages.")
@click.option("--genome-fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Share of the training reads drawn from the --genome files (the rest from random sequence).")
@click.option("--init-from", metavar="DIR", help="Fine-tune: start from the parameters of a trained model (a directory with params.npz and config.json, or 'shipped' for the weights in the package). Its architecture is used, and --embedding-dim, --num-heads, --num-layers, --read-length and --reference-window are ignored; --base-identity may add its weight (starting at 1).")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Processes that make training batches ahead of the device (0: in this process). Same result for any value.")
@click.option("--progress/--quiet", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
def train(out_dir, steps, batch_size, windows_per_read, learning_rate, seed, validate_every, embedding_dim, num_heads, num_layers, dropout,
          read_length, reference_window, min_read_length, near_paralog, base_identity, max_error_rate, max_snp_rate, position_smoothing, genomes,
          genome_fraction, init_from, workers, progress):
    """Train the NeuralReadMapper on simulated reads (CPU or GPU, whatever JAX sees).

    With a checkpoint in DIR training resumes from it up to --steps (the example generator follows
    the options given now, so a run can continue on harder examples).
    """
    from neuromap.operators.mapping import NeuralReadMapperConfig
    from neuromap.train import TrainConfig, init_source, train as run_train

    architecture = dict(read_length=read_length, reference_window=reference_window, embedding_dim=embedding_dim,
                        num_heads=num_heads, num_layers=num_layers)
    if init_from:
        import json as _json

        init_from = "shipped" if init_from == "shipped" else os.path.abspath(init_from)  # as recorded in train_config.json
        source = init_source(init_from)
        for name in ("params.npz", "config.json"):
            if not os.path.exists(os.path.join(source, name)):
                raise NeuromapError(f"{source}: no {name}: not a trained neuromap model (--init-from)")
        try:
            with open(os.path.join(source, "config.json")) as fh:
                trained = _json.load(fh)
        except (OSError, ValueError) as exc:
            raise NeuromapError(f"{os.path.join(source, 'config.json')}: not a model configuration ({exc}) (--init-from)") from None
        if not isinstance(trained, dict):
            raise NeuromapError(f"{os.path.join(source, 'config.json')}: not a model configuration (--init-from)")
        architecture = {key: value for key, value in trained.items() if key not in ("dropout_rate", "base_identity", "compute_dtype")}
        base_identity = base_identity or bool(trained.get("base_identity", False))
    try:
        model_config = NeuralReadMapperConfig(**architecture, dropout_rate=dropout, base_identity=base_identity)
    except (TypeError, ValueError) as exc:
        raise NeuromapError(str(exc)) from None
    cfg = TrainConfig(steps=steps, batch_size=batch_size, windows_per_read=windows_per_read, learning_rate=learning_rate, seed=seed,
                      validate_every=validate_every, min_read_length=min_read_length, near_paralog=tuple(near_paralog),
                      max_error_rate=max_error_rate, max_snp_rate=max_snp_rate, init_from=init_from,
                      position_smoothing=position_smoothing, genomes=tuple(os.path.abspath(g) for g in genomes),
                      genome_fraction=genome_fraction)
    if cfg.genomes:
        from neuromap.training_data import usable_contigs

        try:  # reads them: a bad or short file is a clean error here, not in a worker
            usable_contigs(cfg.genomes, cfg.window_width)
        except ValueError as exc:
            raise NeuromapError(f"--genome: {exc}") from None
    show = sys.stderr.isatty() if progress is None else progress
    run_train(model_config, cfg, out_dir, progress=show, log=lambda m: click.echo(f"neuromap: {m}", err=True), workers=workers)


@cli.command()
@click.argument("weights_dir", type=click.Path(file_okay=False))
@click.option("--genome-size", type=click.IntRange(100_000), default=1_000_000, show_default=True, help="Size of the held-out synthetic genome.")
@click.option("-n", "--reads", "n_reads", type=click.IntRange(100), default=20_000, show_default=True, help="Held-out simulated reads.")
@click.option("--seed", type=int, default=1001, show_default=True, help="Seed of the genome and reads (keep it apart from training and benchmarks).")
def calibrate(weights_dir, genome_size, n_reads, seed):
    """Fit the MAPQ calibration of the model in WEIGHTS_DIR (writes WEIGHTS_DIR/calibration.json)."""
    import json as _json

    from neuromap.calibrate import calibrate as run_calibrate

    for name in ("params.npz", "config.json"):
        if not os.path.exists(os.path.join(weights_dir, name)):
            raise NeuromapError(f"{weights_dir}: no {name} (train a model with `neuromap train -o {weights_dir}`)")
    click.echo(_json.dumps(run_calibrate(weights_dir, genome_size, n_reads, seed), indent=1))


def run_summary(totals, seconds: float, neural: bool) -> dict:
    device = totals.device or "cpu"  # told by the threads that ran the network
    if neural and not totals.device:  # no read reached the network (e.g. an empty input)
        from neuromap.model import device_name

        device = device_name()
    pct = lambda x: 100.0 * x / totals.reads if totals.reads else 0.0  # noqa: E731
    return {
        "program": "neuromap",
        "version": __version__,
        "reads": totals.reads,
        "bases": totals.bases,
        "mapped": totals.mapped,
        "mapped_pct": pct(totals.mapped),
        "mapq30": totals.mapq30,
        "mapq30_pct": pct(totals.mapq30),
        "unmapped": totals.reads - totals.mapped,
        "paired": totals.paired,
        "properly_paired": totals.proper,
        "properly_paired_pct": pct(totals.proper),
        "seconds": round(seconds, 3),
        "reads_per_second": totals.reads / seconds if seconds > 0 else 0.0,
        "placement": "network" if neural else "seeds+DP",
        "device": device,
    }


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress_bar(show: bool):
    """(bar, note_line): `align`'s tqdm bar on stderr and a way to print a line above it, or, with
    `show` False, neither bar nor tqdm: its import (about 90 ms on 2 cores, most of it
    importlib.metadata) would delay every run whose stderr is not a terminal, as in a pipeline.
    (Imported here, not above: worker processes import this module, their __main__.)"""
    if not show:
        yield _NoBar(), lambda line: print(line, file=sys.stderr, flush=True)
        return
    from tqdm import tqdm

    with tqdm(unit=" reads", file=sys.stderr, desc="aligning", dynamic_ncols=True) as bar:
        yield bar, lambda line: tqdm.write(line, file=sys.stderr)


def write_json_atomic(path: str, data: dict) -> None:
    import json

    from neuromap.scratch import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")


# Set by `align` when it has finished ("threads" or "processes", how it ran): see _end_now.
_END_NOW: str | None = None


def _end_now() -> None:
    """End the process at once, without Python's teardown, after an `align` has finished: its
    output is written and committed, its figures printed. In one process (threads), with JAX
    loaded, that teardown took 0.28 s of a one-read run on 2 cores after the work was done; the
    model's background threads are waited for as at a normal exit, and no worker process or
    shared semaphore is left to release. With worker processes (no JAX here) the exit functions
    run first. Should a stream fail to flush, the normal exit reports it instead."""
    if _END_NOW == "processes":
        # The exit functions (multiprocessing's among them: what the fork server, the shared
        # semaphores and memory need) run as at a normal exit; only the interpreter's own
        # teardown, freeing every object one by one, is skipped (0.05-0.08 s on 2 cores). No
        # thread of ours is left by then (the pool and the SAM writer have been joined).
        import atexit

        atexit._run_exitfuncs()
    else:
        model = sys.modules.get("neuromap.model")
        if model is not None:
            model.settle_background()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(0)


def main(argv=None) -> None:
    """The `neuromap` command: `argv`, or the command line's arguments. Run as the command (no
    `argv`: the console script, `python -m neuromap`), an `align` in one process ends the process
    as soon as it has finished (_end_now); called with `argv` from Python, it returns."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="neuromap", standalone_mode=False)
        trace.event("exit")
        if _END_NOW and argv is None:
            _end_now()
    except NeuromapError as exc:
        print(f"neuromap: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        print("neuromap: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("neuromap: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("neuromap: terminated", file=sys.stderr)
        sys.exit(143)
    except (OutputClosed, BrokenPipeError):
        # stdout's reader has gone (`| head`): end quietly, as SIGPIPE would, but through the
        # normal exit, which stops worker processes and releases what they share (an abrupt
        # end leaves the resource tracker warning of leaked semaphores). Writes go to /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except MemoryError:
        print("neuromap: error: out of memory", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # a bug: say so in one line; the traceback on request
        if os.environ.get("NEUROMAP_DEBUG"):
            raise
        print(f"neuromap: error: internal error ({type(exc).__name__}: {exc}); rerun with NEUROMAP_DEBUG=1 "
              "for the traceback and please report it", file=sys.stderr)
        sys.exit(70)


if __name__ == "__main__":
    main()
