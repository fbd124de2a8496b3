"""Instance records and the readers/writers of every supported training-data format."""

from negclean.data.records import Instance, Passage

__all__ = ["Instance", "Passage"]
