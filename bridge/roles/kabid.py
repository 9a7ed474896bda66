"""Kepala Bidang ("kepala bidang yang membidangi"): answers escalated cases and gives paraf.

The kabid uses the kasi's commands (!jawab, !paraf, !kembalikan); what the kabid may do
in each step is the SOP profile's word.
"""
from __future__ import annotations

