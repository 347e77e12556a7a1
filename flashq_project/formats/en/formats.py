"""Date and time formats for English (the admin's language, LANGUAGE_CODE en-us): ISO
order and seconds everywhere, since an operator lines up what the admin shows with
logs and audit events to the second. Django's own English formats drop the seconds
("Dec. 6, 2026, 9:13 p.m.")."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
