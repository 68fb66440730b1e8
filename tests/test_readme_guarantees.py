"""Every sentence of README's "What is guaranteed on interruption and bad input" is backed by tests.

``GUARANTEES`` maps a key phrase of each sentence of that section to the tests that check it.
The tests below check that (a) every key phrase is in the section (whitespace-normalised, so
line wrapping does not matter) and (b) every listed test exists (its file, and a ``test_*``
function of that name in it, found by parsing the file, so nothing heavy is imported).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## What is guaranteed on interruption and bad input"

T = "tests/training/"
D = "tests/data/"
E = "tests/evaluation/"
I = "tests/inference/"
C = "tests/cli/"

#: key phrase of a README sentence -> node ids (file::function) of the tests that back it.
GUARANTEES: dict[str, list[str]] = {
    # -- No lost work
    "a failed write leaves the previous checkpoint and no temporary file": [
        T + "test_checkpoint.py::test_failed_write_leaves_the_old_file_and_no_temp",
    ],
    "A checkpoint is written at the end of every epoch": [
        T + "test_trainer.py::test_run_folder_contents_and_metric_values",
        T + "test_interruption.py::test_sigkill_mid_epoch_then_resume_gives_the_same_metrics",
    ],
    "SIGTERM (or Ctrl-C, SIGINT) finishes the current step, saves a mid-epoch checkpoint and exits with status 130 and the command to resume": [
        T + "test_trainer.py::test_mid_epoch_interrupt_saves_and_resumes_exactly",
        T + "test_interruption.py::test_sigterm_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly",
    ],
    "ends with exactly the metrics of an uninterrupted run, after a SIGKILL as after a SIGTERM or SIGINT": [
        T + "test_interruption.py::test_sigkill_mid_epoch_then_resume_gives_the_same_metrics",
        T + "test_interruption.py::test_sigterm_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly",
        T + "test_trainer.py::test_resume_reproduces_an_uninterrupted_run",
    ],
    "A second `compare` reuses the finished runs": [
        C + "test_compare_cli.py::test_second_invocation_reuses_everything",
        "tests/experiments/test_study_compare.py::test_second_invocation_reuses_the_long_runs",
    ],
    # -- No lost or clobbered files
    "A non-empty folder that is not a lossensemble run is refused as a run folder and left untouched": [
        T + "test_run_folder_safety.py::test_folder_of_other_files_is_refused_and_left_untouched",
        T + "test_run_folder_safety.py::test_empty_or_missing_folder_is_fine",
    ],
    "a folder that already holds a run must be resumed, not overwritten": [
        T + "test_trainer.py::test_existing_run_folder_needs_resume_and_resume_needs_a_checkpoint",
    ],
    "A second training into the same run folder gets a clear error: the folder is locked": [
        T + "test_run_folder_safety.py::test_a_second_writer_of_the_same_run_folder_is_refused",
    ],
    "A failed setup leaves no run folder behind": [
        T + "test_run_folder_safety.py::test_failed_setup_leaves_no_run_folder",
    ],
    "Stale `*.tmp` files of a killed run are removed on the next start or resume": [
        T + "test_run_folder_safety.py::test_stale_temp_files_are_removed_on_start_and_on_resume",
    ],
    "Resuming a finished run keeps the compressed block of `metrics.json`": [
        T + "test_run_folder_safety.py::test_resume_of_a_finished_run_keeps_the_post_hoc_compressed_metrics",
    ],
    "A full disk (ENOSPC) while checkpointing is a one-line error that says how many bytes were needed, and the last good checkpoint is kept": [
        T + "test_run_folder_safety.py::test_full_disk_while_checkpointing_says_how_much_space_and_what_is_kept",
        T + "test_run_folder_safety.py::test_other_write_errors_are_not_disguised_as_a_full_disk",
    ],
    "A read-only or unwritable output folder is reported before training": [
        T + "test_trainer.py::test_read_only_output_folder_fails_before_training",
    ],
    "A read-only or unwritable `LOSSENSEMBLE_CACHE` only costs time": [
        D + "test_glyph_cache.py::test_unwritable_cache_folder_builds_in_memory",
        D + "test_glyph_cache.py::test_read_only_file_system_builds_in_memory",
    ],
    # -- Numerical faults
    "A NaN/inf loss stops training with a message naming the loss; the last good checkpoint is kept": [
        T + "test_trainer.py::test_nan_loss_stops_with_a_message_naming_the_loss_and_keeps_the_checkpoint",
    ],
    "A step with non-finite gradients is skipped and counted, and leaves the weights untouched": [
        T + "test_trainer.py::test_non_finite_gradients_skip_the_step_without_touching_weights",
    ],
    "10 such steps in a row stop the run": [
        T + "test_trainer.py::test_ten_non_finite_gradient_steps_in_a_row_stop_the_run",
    ],
    "Every loss returns a finite value and finite gradients on batches with a single class or without positive pairs": [
        "tests/losses/test_loss_registry.py::test_degenerate_batches_are_finite",
    ],
    # -- Bad data
    "Corrupt, truncated, zero-byte, non-image and decompression-bomb files are skipped with a warning and counted": [
        D + "test_bad_images.py::test_reader_skips_each_kind_of_bad_file",
        D + "test_bad_images.py::test_warned_once_per_file_but_counted_every_time",
        D + "test_bad_images.py::test_dataloader_skips_and_counts",
    ],
    "Every Pillow image mode is read as the picture it shows": [
        D + "test_image_modes.py::test_16_bit_png_is_scaled_not_white",
        D + "test_image_modes.py::test_16_bit_big_endian_tiff",
        D + "test_image_modes.py::test_32_bit_integer_tiff",
        D + "test_image_modes.py::test_float_tiff",
        D + "test_image_modes.py::test_grey_with_alpha_is_composited_on_white",
        D + "test_image_modes.py::test_rgba_is_composited_on_white",
        D + "test_image_modes.py::test_palette_with_transparency",
        D + "test_image_modes.py::test_palette_without_transparency",
        D + "test_image_modes.py::test_grey_and_rgb_with_a_transparent_colour",
        D + "test_image_modes.py::test_cmyk_tiff",
        D + "test_image_modes.py::test_one_bit_and_grey",
        D + "test_image_modes.py::test_in_memory_modes",
    ],
    "a float image holding NaN is skipped and counted": [
        D + "test_image_modes.py::test_float_with_nan_is_skipped_and_counted",
    ],
    "Duplicate rows and identical files under another name are dropped once, with one warning, and counted in `summary.json`": [
        D + "test_duplicates.py::test_repeated_test_rows_no_longer_inflate_recall",
        D + "test_duplicates.py::test_duplicate_train_rows_are_dropped_once_and_warned_once",
        D + "test_duplicates.py::test_identical_bytes_under_another_name_are_duplicates",
        D + "test_duplicates.py::test_clean_data_reports_zero_and_other_datasets_nothing",
        E + "test_run_issues.py::test_unreadable_eval_images_and_data_issues_are_counted",
    ],
    "Train/test leakage (the same image in both splits, by path or by content) and an image under two labels are refused": [
        D + "test_duplicates.py::test_same_file_in_train_and_test_is_leakage",
        D + "test_duplicates.py::test_identical_bytes_in_a_train_and_a_test_folder_is_leakage",
        D + "test_duplicates.py::test_same_image_under_two_labels_is_refused",
        D + "test_duplicates.py::test_symlink_into_another_class_folder_is_two_labels",
    ],
    "A class with one image is dropped from training with a warning": [
        D + "test_benchmarks.py::test_single_image_classes_are_dropped_from_train",
    ],
    "An empty training split, a test split sharing classes with training, a CSV with missing columns, unknown paths or mixed label types are clear errors": [
        D + "test_generic.py::test_empty_train_split_is_an_error",
        D + "test_generic.py::test_csv_shared_classes_break_the_protocol",
        D + "test_generic.py::test_csv_missing_columns_are_named",
        D + "test_generic.py::test_csv_unknown_paths_name_the_rows",
        D + "test_generic.py::test_csv_mixed_label_types_name_the_rows",
    ],
    "CSV files with a byte-order mark, CRLF line ends, quoted fields or blank lines are read": [
        D + "test_csv_format.py::test_byte_order_mark_and_crlf_are_accepted",
        D + "test_csv_format.py::test_quoted_fields_and_blank_lines",
    ],
    "text that is not UTF-8 and malformed rows are errors naming the line": [
        D + "test_csv_format.py::test_text_that_is_not_utf8_names_the_line",
        D + "test_csv_format.py::test_line_numbers_count_blank_lines_and_multiline_fields",
        D + "test_csv_format.py::test_rows_with_more_fields_than_the_header",
        D + "test_csv_format.py::test_unclosed_quote_and_repeated_column",
    ],
    "The glyph cache is verified by its SHA-256 hash on load; a damaged cache file is rebuilt with a warning": [
        D + "test_glyph_cache.py::test_cache_file_is_written_with_its_checksum",
        D + "test_glyph_cache.py::test_damaged_render_cache_is_rebuilt_with_a_warning",
        D + "test_glyph_cache.py::test_damaged_pool_is_recomputed_even_when_it_is_valid_json",
    ],
    # -- Bad configs and arguments
    "Unknown keys (with the closest key suggested)": [
        "tests/test_config.py::test_unknown_key_suggests_the_close_one",
    ],
    "wrong types, negative sizes, an empty loss list": [
        "tests/test_config.py::test_bad_values_name_the_key",
    ],
    "an unknown loss name (closest names suggested)": [
        "tests/losses/test_loss_registry.py::test_unknown_loss_suggests_close_names",
        T + "test_trainer.py::test_unknown_loss_is_reported_before_any_data_is_built",
    ],
    "out-of-range values, huge integers included, are one-line errors naming the key, before any training starts": [
        "tests/test_config_hostile.py::test_out_of_range_values_are_one_line_errors_naming_the_key",
        "tests/test_config_hostile.py::test_boundary_values_are_accepted",
        T + "test_trainer.py::test_unknown_loss_is_reported_before_any_data_is_built",
    ],
    "on the command line, exit status 2": [
        C + "test_main.py::test_user_errors_are_one_line_exit_2",
    ],
    "YAML syntax errors (with file, line and column)": [
        "tests/test_config_hostile.py::test_yaml_syntax_errors_are_one_line_with_file_line_and_column",
        "tests/test_config.py::test_malformed_yaml_and_missing_file",
    ],
    "configs that are not UTF-8, alias bombs and recursive aliases: one line (an alias bomb is refused at once)": [
        "tests/test_config_hostile.py::test_non_utf8_config_file_is_a_one_line_error",
        "tests/test_config_hostile.py::test_yaml_alias_bomb_is_refused_quickly",
        "tests/test_config_hostile.py::test_alias_bomb_in_an_override_is_refused",
        "tests/test_config_hostile.py::test_recursive_alias_is_a_clear_error",
    ],
    "An output (`-o`, `--json`) that names a folder, or an existing file that is not JSON, is refused before anything is evaluated or overwritten": [
        T + "test_run_folder_safety.py::test_evaluate_json_into_a_folder_is_refused_before_evaluating",
        C + "test_main.py::test_evaluate_json_goes_to_stdout_and_output_to_a_file",
        C + "test_evaluate_embeddings_cli.py::test_output_refuses_a_folder_and_a_non_json_file",
        I + "test_index_cli.py::test_embed_writes_json_lines_and_refuses_a_folder_as_output",
    ],
    "random configs, files that are not configs and random CSV files either succeed or fail with exit status 2 and one line, and no file outside the output folder is touched": [
        "tests/fuzz/test_fuzz_inputs.py::test_random_configs_succeed_or_fail_in_one_line",
        "tests/fuzz/test_fuzz_inputs.py::test_files_that_are_not_configs_fail_in_one_line",
        "tests/fuzz/test_fuzz_inputs.py::test_random_csv_files_succeed_or_fail_in_one_line",
        "tests/fuzz/test_fuzz_inputs.py::test_the_watch_sees_files_written_outside_the_output_folder",
    ],
    # -- Evaluation
    "Degenerate evaluations (one class, identical or all-zero embeddings, classes with a single item, K beyond the gallery) give defined values and a warning naming the case": [
        E + "test_degenerate.py::test_one_class_is_trivially_100_and_nmi_undefined",
        E + "test_degenerate.py::test_identical_embeddings_make_every_metric_undefined",
        E + "test_degenerate.py::test_parallel_embeddings_are_identical_for_cosine_only",
        E + "test_degenerate.py::test_all_zero_embeddings_make_every_metric_undefined",
        E + "test_degenerate.py::test_some_zero_rows_are_flagged_under_cosine_only",
        E + "test_degenerate.py::test_one_item_per_class_has_no_positive_map_undefined_nmi_trivial",
        E + "test_degenerate.py::test_single_query_per_class_in_query_gallery_mode",
        E + "test_degenerate.py::test_k_beyond_the_gallery_is_flagged_but_kept",
        E + "test_degenerate.py::test_healthy_data_has_no_warnings_and_a_json_ready_form",
    ],
    "the warnings, and null for an undefined metric, are in the `--json` output and in `summary.json`": [
        E + "test_degenerate.py::test_json_form_has_null_for_nan_and_the_reasons",
        C + "test_evaluate_embeddings_cli.py::test_degenerate_data_warns_and_the_json_says_why",
        C + "test_evaluate_embeddings_cli.py::test_single_item_class_warns_and_writes_null_when_undefined",
        C + "test_main.py::test_evaluate_json_goes_to_stdout_and_output_to_a_file",
        E + "test_run_issues.py::test_unreadable_eval_images_and_data_issues_are_counted",
    ],
    "NaN or inf embeddings are an error, not a number": [
        E + "test_degenerate.py::test_nan_and_inf_embeddings_are_a_user_error_not_a_number",
    ],
    "Images that cannot be read at evaluation are left out with a warning and counted, in the metrics and in `summary.json`": [
        E + "test_run_issues.py::test_unreadable_eval_images_and_data_issues_are_counted",
        E + "test_run_issues.py::test_a_clean_run_has_empty_issues",
    ],
    "`.npz` archives, text and pickle files passed as `.npy` get a message saying what they are": [
        C + "test_evaluate_embeddings_cli.py::test_npz_archive_names_its_arrays",
        C + "test_evaluate_embeddings_cli.py::test_text_labels_and_pickle_files_say_what_they_are",
        C + "test_evaluate_embeddings_cli.py::test_bad_shape_and_not_npy",
    ],
    "labels and masks of the wrong shape or kind are one-line errors": [
        C + "test_evaluate_embeddings_cli.py::test_labels_of_the_wrong_shape_or_kind",
        C + "test_evaluate_embeddings_cli.py::test_masks_of_the_wrong_length_or_kind",
        C + "test_evaluate_embeddings_cli.py::test_length_mismatch",
    ],
    # -- Models, indexes and checkpoints
    "A foreign or hand-edited checkpoint given to `--resume` is a one-line error naming the problem, and nothing is written": [
        T + "test_resume_hostile.py::test_foreign_safetensors_file",
        T + "test_resume_hostile.py::test_metadata_that_is_not_an_object",
        T + "test_resume_hostile.py::test_unexpected_metadata",
        T + "test_resume_hostile.py::test_extra_tensor_outside_the_known_groups",
        T + "test_resume_hostile.py::test_extra_model_tensor",
        T + "test_resume_hostile.py::test_missing_model_tensor",
        T + "test_resume_hostile.py::test_optimizer_tensor_for_an_unlisted_parameter",
        T + "test_resume_hostile.py::test_optimizer_groups_that_drop_a_parameter",
        T + "test_resume_hostile.py::test_optimizer_groups_that_do_not_fit_the_model",
        T + "test_resume_hostile.py::test_a_valid_checkpoint_still_resumes",
    ],
    "A truncated or foreign checkpoint file is a clear error": [
        T + "test_checkpoint.py::test_truncated_or_foreign_file_is_a_clear_error",
    ],
    "a config that no longer fits the checkpoint is a one-line error with exit status 2": [
        C + "test_main.py::test_train_then_evaluate_gives_the_same_metrics",
    ],
    "the fields of `config.json` are type- and range-checked (one-line error naming the file and the field)": [
        I + "test_model_file_hostile.py::test_corrupted_field_is_a_one_line_error_naming_file_and_field",
        I + "test_model_file_hostile.py::test_description_that_is_no_object_is_refused",
        I + "test_model_file_hostile.py::test_cli_reports_a_corrupted_description_in_one_line",
    ],
    "the description is checksummed: a hand-edited architecture or embedding is refused": [
        I + "test_model_file_hostile.py::test_valid_but_hand_edited_architecture_is_refused",
        I + "test_model_file_hostile.py::test_switching_the_embedding_by_hand_is_refused",
        I + "test_model_file_hostile.py::test_tensors_file_without_description_checksum_is_refused_for_format_2",
        I + "test_model_file_hostile.py::test_informative_fields_may_be_edited",
    ],
    "An index is bound to its model: a swapped model folder is an error": [
        I + "test_index.py::test_swapped_model_is_refused",
        I + "test_index_cli.py::test_swapped_or_foreign_model_is_exit_2",
    ],
    "the index reads its model only inside its own folder": [
        I + "test_index.py::test_model_entry_outside_the_index_folder_is_refused",
        I + "test_index_cli.py::test_swapped_or_foreign_model_is_exit_2",
    ],
    "a tampered ONNX graph is refused": [
        I + "test_index_onnx.py::test_tampered_graph_is_refused",
    ],
    "Paths with newlines or separators round-trip through `paths.jsonl`, which cannot be misread": [
        I + "test_index.py::test_paths_with_newlines_and_separators_round_trip",
    ],
    "damaged index files are clear errors naming the file": [
        I + "test_index.py::test_damaged_index_files_are_one_line_errors",
    ],
    # -- No unsafe loading
    "a crafted pickle cannot run code": [
        "tests/models/test_unsafe_loading.py::test_crafted_pickle_weights_do_not_run_code",
        "tests/models/test_unsafe_loading.py::test_plain_torch_state_dict_still_loads",
    ],
    "configs are read with `yaml.safe_load`, so Python tags are refused": [
        "tests/test_config.py::test_python_yaml_tags_are_refused",
    ],
    "pickled object arrays given to `evaluate-embeddings` are refused": [
        C + "test_evaluate_embeddings_cli.py::test_pickled_object_array_is_refused",
    ],
}


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    return _normalise(text.split(SECTION, 1)[1].split("\n## ", 1)[0])


def _test_names(path: Path) -> set[str]:
    """``func`` and ``Class::func`` for every ``test_*`` function defined in a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"))
    return names


def test_every_key_phrase_is_in_the_readme_section():
    section = readme_section()
    missing = [phrase for phrase in GUARANTEES if _normalise(phrase) not in section]
    assert not missing, f"README's reliability section no longer says: {missing}"


def test_every_guarantee_names_at_least_one_test():
    assert all(GUARANTEES.values())


@pytest.mark.parametrize("phrase", list(GUARANTEES), ids=[p[:40] for p in GUARANTEES])
def test_every_backing_test_exists(phrase):
    missing = []
    for node_id in GUARANTEES[phrase]:
        file, _, name = node_id.partition("::")
        path = ROOT / file
        if not path.is_file() or name.split("[")[0] not in _test_names(path):
            missing.append(node_id)
    assert not missing, f"{phrase!r}: no such test {missing}"


def test_every_bullet_of_the_section_is_backed():
    """Each bold-headed bullet of the section holds at least one key phrase."""
    section = readme_section()
    bullets = [b for b in re.split(r"(?= - \*\*)", " " + section) if b.strip().startswith("- **")]
    assert len(bullets) == 8
    for bullet in bullets:
        assert any(_normalise(p) in bullet for p in GUARANTEES), bullet[:60]
