#!/usr/bin/env nextflow
// Minimal pipeline around the NEUROMAP_ALIGN module:
//   nextflow run workflows/nextflow/main.nf --reference test-data/ref.fa --reads 'test-data/reads.fq' --outdir results
//   nextflow run workflows/nextflow/main.nf --reference test-data/ref.fa --reads 'test-data/reads_{1,2}.fq' --paired --outdir results
nextflow.enable.dsl = 2

include { NEUROMAP_ALIGN } from './modules/neuromap/align/main'

params.reference = null
params.reads     = null
params.outdir    = 'results'
params.paired    = false   // --reads is a glob of R1/R2 pairs, e.g. 'data/*_{1,2}.fq.gz'

workflow {
    if (!params.reference || !params.reads) {
        error "Give --reference FASTA and --reads 'GLOB' (single-end FASTQ files; with --paired, R1/R2 pairs such as 'data/*_{1,2}.fq.gz')"
    }
    reads = params.paired
        ? Channel.fromFilePairs(params.reads, checkIfExists: true)
            .map { id, fqs -> [ [ id: id, single_end: false ], fqs ] }   // two files: neuromap align REF R1 R2
        : Channel.fromPath(params.reads, checkIfExists: true)
            .map { fq -> [ [ id: fq.simpleName, single_end: true ], fq ] }
    reference = Channel.value([ [ id: 'reference' ], file(params.reference, checkIfExists: true) ])
    NEUROMAP_ALIGN(reads, reference)   // BAM + BAI published to ${params.outdir}/neuromap (nextflow.config)
}
