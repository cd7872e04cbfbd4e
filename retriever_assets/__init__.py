"""retriever-assets: NV-Retriever hard-negative mining and embedding fine-tuning as Dagster assets."""

import warnings

from dagster_shared.utils.warnings import BetaWarning

# Known and not actionable by a user, printed on every run otherwise: Dagster's beta notice for the observable source
# asset (a documented 1.13 idiom) and mteb 2.26 calling sentence-transformers' renamed embedding-dimension getter.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", message=".*get_sentence_embedding_dimension.*", category=FutureWarning)
