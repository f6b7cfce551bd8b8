"""CSV bytes of artifacts: header order, dropped extra keys, platform-independent line ends."""

from saliencylab.csvfiles import csv_bytes


def test_columns_in_order_extra_keys_left_out_and_lf_line_ends():
    rows = [{"b": 2, "a": 1, "extra": "x"}, {"a": 3, "b": "4,5"}]
    assert csv_bytes(rows, ("a", "b")) == b'a,b\n1,2\n3,"4,5"\n'


def test_no_rows_is_the_header_alone():
    assert csv_bytes([], ["epoch", "loss"]) == b"epoch,loss\n"
