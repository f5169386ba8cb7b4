process NEUROMAP_ALIGN {
    tag "$meta.id"
    label 'process_high'

    conda "${moduleDir}/environment.yml"

    input:
    tuple val(meta), path(reads)
    tuple val(meta2), path(reference)

    output:
    tuple val(meta), path("*.bam")    , emit: bam
    tuple val(meta), path("*.bam.bai"), emit: bai
    path "versions.yml"               , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args   ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    neuromap align \\
        -t $task.cpus \\
        -R '@RG\\tID:${prefix}\\tSM:${meta.id}' \\
        $args \\
        $reference \\
        $reads \\
        -o ${prefix}.bam

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        neuromap: \$(neuromap --version | sed 's/^neuromap, version //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.bam
    touch ${prefix}.bam.bai

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        neuromap: \$(neuromap --version | sed 's/^neuromap, version //')
    END_VERSIONS
    """
}
