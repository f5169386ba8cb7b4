#!/usr/bin/env nextflow
// Minimal pipeline around the NEUROMAP_ALIGN module:
//   nextflow run workflows/nextflow/main.nf --reference test-data/ref.fa --reads 'test-data/*.fq' --outdir results
nextflow.enable.dsl = 2

include { NEUROMAP_ALIGN } from './modules/neuromap/align/main'

params.reference = null
params.reads     = null
params.outdir    = 'results'

workflow {
    if (!params.reference || !params.reads) {
        error "Give --reference FASTA and --reads 'GLOB' (single-end FASTQ files)"
    }
    reads = Channel.fromPath(params.reads, checkIfExists: true)
        .map { fq -> [ [ id: fq.simpleName, single_end: true ], fq ] }
    reference = Channel.value([ [ id: 'reference' ], file(params.reference, checkIfExists: true) ])
    NEUROMAP_ALIGN(reads, reference)   // BAM + BAI published to ${params.outdir}/neuromap (nextflow.config)
}
