"""Spreadsheet imports, the pure half: read a file, find its header, clean its cells.

No database and no Flask here, only functions and dataclasses, so every step can be tested on
bytes built in a test:

- `reader.read_table` turns an uploaded .xlsx/.xlsm/.xls/.ods/.csv into a `RawSheet` (rows of
  cell values, row 0 = spreadsheet row 1), deciding the type from the content and refusing
  hostile or broken files (zip bombs, XML entities, a renamed text file, a truncated file, a
  sheet whose size would exhaust memory) with one `ImportFileError` in Chinese.
- `headers.locate_header` finds the header row under merged title rows (two-level headers
  too) and maps Chinese header spellings to canonical fields through aliases;
  `headers.drop_non_data_rows` drops blank, 小计/合计, repeated-header and 填表人 rows and keeps
  every row's spreadsheet row number; `headers.split_address` splits "桂园小区3号楼2单元102室".
- `normalize.normalize_table` cleans the columns with vectorized pandas (full-width digits,
  一/二/三 and 3#/3号楼/三栋, dates in every local form, phones, ID numbers) and returns the
  clean frame plus one error row per bad cell; it never raises on a bad cell.
"""
