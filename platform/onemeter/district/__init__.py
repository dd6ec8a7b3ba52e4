"""The district leading-group office (区领导小组办公室): rollups, overdue lists, backward
schedule, rankings for the annual assessment and charts, read across sub-districts."""
