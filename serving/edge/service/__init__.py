"""The hospital's screening service (``ctscreen edge serve``): studies in from the PACS, screened
through the node's Triton once complete, results back to the PACS as DICOM SEG and SR, a worklist
and viewer for physicians, and confirmed cases queued, de-identified, for central."""
