"""Segment Editor effect "UGS-Net nodule" (registered by the UGSNetSegmentation module at startup)."""
