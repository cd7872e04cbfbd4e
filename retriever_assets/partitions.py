"""The `dataset` partitions: one per BEIR folder registered from the data root."""

import dagster as dg

dataset_partitions = dg.DynamicPartitionsDefinition(name="dataset")
