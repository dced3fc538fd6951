"""The retrain pipeline (Kubeflow Pipelines v2): version the new data, train the lung-region model, preprocess, split with a
frozen test set, train the segmentation candidates in parallel and select by validation Dice, train
the classifiers paired with it in parallel and select by validation AUC, evaluate on the frozen test
set, gate against the champion, and register the winner in MLflow.

The dataset version flows from ``ingest`` into every later step as an input, and the training
configuration and gate policy are passed by value (JSON), so a cached step never serves results
computed for other data or other settings. Resource requests are for a cluster; ``kfp.local`` ignores them.
"""

from kfp import dsl

from components.evaluate import evaluate
from components.gate import gate
from components.ingest import ingest
from components.preprocess import preprocess
from components.register import register
from components.select_segmentation import select_segmentation
from components.split import split
from components.train_lungs import train_lungs
from components.train_classification import train_classification
from components.train_segmentation import train_segmentation


def _gpu(task: dsl.PipelineTask, memory: str) -> dsl.PipelineTask:
    return task.set_cpu_request("4").set_memory_request(memory).set_memory_limit(memory).set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)


def _cpu(task: dsl.PipelineTask, cpu: str = "1", memory: str = "4G") -> dsl.PipelineTask:
    return task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)


@dsl.pipeline(name="ctscreen-retrain", description="Version new cases, train and compare the segmentation -> classification pairs, "
                                                   "gate against the champion, register the winner.")
def retrain(intake: str, dataset: str, cache: str, tracking_uri: str, config: str, lung_config: str, gate_policy: str, segmentation_models: list,
            classification_models: list, signing_key: str, experiment: str = "ctscreen-retrain", seed: int = 0) -> str:
    # ingest, gate and register read or change state outside their inputs (intake, registry): never cached
    ingested = _cpu(ingest(intake=intake, dataset=dataset, seed=seed)).set_caching_options(False)
    version = ingested.outputs["dataset_version"]
    lungs = _gpu(train_lungs(dataset=dataset, dataset_version=version, cache=cache, lung_config=lung_config), "16G").outputs["lungs"]
    prepared = _cpu(preprocess(dataset=dataset, dataset_version=version, cache=cache, config=config, lungs=lungs), "2", "8G")
    placed = _cpu(split(dataset=dataset, dataset_version=version, manifest=prepared.outputs["manifest"]))
    common = {"manifest": prepared.outputs["manifest"], "cache": cache, "config": config, "lungs": lungs}

    with dsl.ParallelFor(segmentation_models) as name:
        segmenter = _gpu(train_segmentation(name=name, assignment=placed.outputs["assignment"], **common), "32G")
    chosen = _gpu(select_segmentation(candidates=dsl.Collected(segmenter.outputs["model"]), **common), "16G")

    with dsl.ParallelFor(classification_models) as name:
        classifier = _gpu(train_classification(name=name, segmentation=chosen.outputs["chosen"], segmented=chosen.outputs["segmented"],
                                               assignment=placed.outputs["assignment"], config=config), "16G")
    evaluated = _gpu(evaluate(segmentation=chosen.outputs["chosen"], classifiers=dsl.Collected(classifier.outputs["model"]),
                              segmented=chosen.outputs["segmented"], assignment=placed.outputs["assignment"], dataset_version=version,
                              **common), "16G")
    decided = _gpu(gate(summary=evaluated.outputs["Output"], manifest=prepared.outputs["manifest"], assignment=placed.outputs["assignment"],
                        cache=cache, tracking_uri=tracking_uri, policy=gate_policy), "16G").set_caching_options(False)
    registered = _cpu(register(bundle=evaluated.outputs["bundle"], evaluation=evaluated.outputs["evaluation"],
                               segmentation_candidates=dsl.Collected(segmenter.outputs["model"]),
                               classification_candidates=dsl.Collected(classifier.outputs["model"]),
                               summary=evaluated.outputs["Output"], decision=decided.output, dataset_version=version,
                               tracking_uri=tracking_uri, experiment=experiment, signing_key=signing_key)).set_caching_options(False)
    return registered.output
