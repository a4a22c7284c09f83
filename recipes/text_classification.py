"""Train a TextGRU text classifier on your files or a Hub data set, with the Hugging Face Trainer.

Single-label, multi-label (a list column, or --label_delimiter) and regression (a float column) all work.

    # a config from recipes/configs (flags after it override the file)
    python recipes/text_classification.py recipes/configs/trec.json --data_dir ../shared/data

    # your own files
    python recipes/text_classification.py --train_file train.csv --test_file test.csv \
        --text_column_names text --label_column_name topic --output_dir outputs/topics

    # two processes (DDP, gloo on CPU); the same flags
    torchrun --nproc_per_node 2 recipes/text_classification.py recipes/configs/trec.json --ddp_backend gloo

Steps: 1 parse arguments → 2 train (textgru.recipe.run_recipe: data, labels, tokenizer, model, Trainer,
evaluation, predictions, model card, plots, push) → 3 print the metrics table.
"""

import textgru  # noqa: F401  (registers the Auto classes)
from textgru.recipe import parse_and_run, recipe_defaults
from textgru.reporting import format_results_table


def main(args: list[str] | None = None) -> dict:
    # 1-2. parse (defaults < JSON config < flags), then data → tokenizer → model → Trainer → evaluate → card
    results, training_args = parse_and_run(recipe_defaults("text-classification"), "text classification", args)
    # 3. report
    if training_args.process_index == 0:
        print(f"\nResults ({training_args.output_dir}):\n{format_results_table(results)}")
    return results


if __name__ == "__main__":
    main()
